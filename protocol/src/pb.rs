//! The generated protobuf types and services (`proto/avs.proto`, `proto/node.proto`). Prost types
//! stay at the gRPC edges: each side converts them into domain values on the first line of a
//! handler (`convert`, and the aggregator's `pb::convert`).

/// Package `aggregator`: the client contract (`Aggregator`) and the operators' (`Node`).
#[allow(clippy::all, clippy::unwrap_used, reason = "generated code")]
pub mod aggregator {
    tonic::include_proto!("aggregator");
}

/// The well-known types the contract uses that `prost_types` does not map (`BoolValue`).
pub mod google {
    #[allow(clippy::all, reason = "generated code")]
    pub mod protobuf {
        tonic::include_proto!("google.protobuf");
    }
}

pub use aggregator::*;

/// The encoded `FileDescriptorSet` of both files, for server reflection and the contract test.
pub const DESCRIPTORS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/descriptors.bin"));
