//! The codec of every generated service and client: prost's, except that a message that is not
//! valid protobuf is the sender's fault. tonic's prost codec answers it INTERNAL, which tells a
//! caller that the server broke; it is INVALID_ARGUMENT here, with prost's reason.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder};
use tonic_prost::{ProstCodec, ProstEncoder};

/// `tonic_prost::ProstCodec` with decoding errors answered INVALID_ARGUMENT.
#[derive(Debug, Clone)]
pub struct WireCodec<T, U> {
    prost: ProstCodec<T, U>,
}

impl<T, U> Default for WireCodec<T, U> {
    fn default() -> Self {
        Self {
            prost: ProstCodec::default(),
        }
    }
}

impl<T, U> Codec for WireCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = WireDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        self.prost.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        WireDecoder {
            buffer_settings: self.prost.decoder().buffer_settings(),
            _message: PhantomData,
        }
    }
}

/// Decodes one message, refusing bytes that are not one.
#[derive(Debug, Clone)]
pub struct WireDecoder<U> {
    buffer_settings: BufferSettings,
    _message: PhantomData<U>,
}

impl<U: Message + Default> Decoder for WireDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        U::decode(buf).map(Some).map_err(malformed)
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.buffer_settings
    }
}

/// The status of a message that does not decode (built here: the wire types sit below the
/// aggregator's error map).
#[expect(
    clippy::disallowed_methods,
    reason = "below the error map, at the wire"
)]
fn malformed(error: prost::DecodeError) -> Status {
    let mut status =
        Status::invalid_argument(format!("the message is not valid protobuf: {error}"));
    status.metadata_mut().insert(
        "x-error-code",
        tonic::metadata::MetadataValue::from_static("INVALID_REQUEST"),
    );
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_that_are_not_a_message_are_the_callers_fault() {
        let error = prost_types::Timestamp::decode(&[0x08, 0xff][..]).unwrap_err();
        let status = malformed(error);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(
            status
                .message()
                .starts_with("the message is not valid protobuf")
        );
        assert_eq!(
            status
                .metadata()
                .get("x-error-code")
                .map(|v| v.to_str().ok()),
            Some(Some("INVALID_REQUEST"))
        );
    }
}
