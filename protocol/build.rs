//! Compiles the wire contract with the pure-Rust `protox` (no system `protoc` needed) and keeps the
//! encoded descriptor set for server reflection and the contract test.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The contract lives at the workspace's root (`proto/`), where clients and readers look for it.
    println!("cargo:rerun-if-changed=../proto");
    let descriptors = protox::compile(["../proto/avs.proto", "../proto/node.proto"], ["../proto"])?;
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out.join("descriptors.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // `Ack` answers a `google.protobuf.BoolValue`, which prost would map to a bare `bool` that
    // tonic's codegen cannot name: the wrappers are generated, the rest stays in `prost_types`.
    tonic_prost_build::configure()
        .compile_well_known_types(true)
        // A request that is not protobuf is the caller's fault, not an INTERNAL error.
        .codec_path("crate::codec::WireCodec")
        .extern_path(".google.protobuf.Struct", "::prost_types::Struct")
        .extern_path(".google.protobuf.Value", "::prost_types::Value")
        .extern_path(".google.protobuf.ListValue", "::prost_types::ListValue")
        .extern_path(".google.protobuf.NullValue", "::prost_types::NullValue")
        .extern_path(".google.protobuf.Timestamp", "::prost_types::Timestamp")
        .compile_fds(descriptors)?;
    Ok(())
}
