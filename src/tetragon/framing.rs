//! Length-delimited protobuf messages (each preceded by its length as a varint),
//! the format of captured `GetEvents` streams.
use prost::Message;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum FramingError {
    #[error("frame {index} at byte {offset}: {source}; the capture is truncated or not length-delimited protobuf")]
    Decode {
        index: usize,
        offset: usize,
        #[source]
        source: prost::DecodeError,
    },
}

/// Decodes every frame of `bytes` into `M`.
pub fn decode_frames<M: Message + Default>(bytes: &[u8]) -> Result<Vec<M>, FramingError> {
    let mut out = Vec::new();
    let mut buf = bytes;
    while !buf.is_empty() {
        let offset = bytes.len() - buf.len();
        let msg = M::decode_length_delimited(&mut buf).map_err(|source| FramingError::Decode {
            index: out.len(),
            offset,
            source,
        })?;
        out.push(msg);
    }
    Ok(out)
}

/// Appends `msg` as one frame.
pub fn encode_frame<M: Message>(msg: &M, out: &mut Vec<u8>) {
    // Writing into a Vec cannot run out of space.
    let _ = msg.encode_length_delimited(out);
}
