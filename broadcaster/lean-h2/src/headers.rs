//! Request header blocks decoded with `loona-hpack` (with the header list size limit and
//! RFC 9113 section 8.2-8.3 checks), and the HPACK integer and string primitives the response
//! encoder (`encode`) writes with.

use http::{HeaderMap, HeaderName, HeaderValue};

/// A request's pseudo-headers and regular headers.
#[derive(Debug, Default)]
pub struct RequestHead {
    pub method: String,
    pub scheme: String,
    pub authority: String,
    pub path: String,
    pub headers: HeaderMap,
}

#[derive(Debug, thiserror::Error)]
pub enum HeadError {
    /// The block does not decode: the HPACK state is lost, a connection error.
    #[error("HPACK: {0}")]
    Compression(#[source] loona_hpack::decoder::DecoderError),
    /// Over our SETTINGS_MAX_HEADER_LIST_SIZE: refused, the connection goes on.
    #[error("header list of {size} bytes is over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// A malformed request (RFC 9113 section 8.1.1): a stream error.
    #[error("malformed request: {0}")]
    Malformed(String),
}

/// Decodes a request's header block. The whole block is always decoded, even past the size
/// limit, so the connection's HPACK table stays in step with the peer's.
pub fn decode_request(
    decoder: &mut loona_hpack::Decoder<'static>,
    block: &[u8],
    max_list_size: usize,
) -> Result<RequestHead, HeadError> {
    let mut head = RequestHead::default();
    let mut size = 0usize;
    let mut malformed: Option<String> = None;
    let mut regular_seen = false;
    decoder
        .decode_with_cb(block, |name, value| {
            size += name.len() + value.len() + 32;
            if size > max_list_size || malformed.is_some() {
                return;
            }
            if let Err(why) = add_field(&mut head, &mut regular_seen, &name, &value) {
                malformed = Some(why);
            }
        })
        .map_err(HeadError::Compression)?;
    if size > max_list_size {
        return Err(HeadError::TooLarge {
            size,
            limit: max_list_size,
        });
    }
    if let Some(why) = malformed {
        return Err(HeadError::Malformed(why));
    }
    if head.method.is_empty() || head.scheme.is_empty() || head.path.is_empty() {
        return Err(HeadError::Malformed(
            "missing :method, :scheme or :path".into(),
        ));
    }
    Ok(head)
}

fn add_field(
    head: &mut RequestHead,
    regular_seen: &mut bool,
    name: &[u8],
    value: &[u8],
) -> Result<(), String> {
    if let Some(pseudo) = name.strip_prefix(b":") {
        if *regular_seen {
            return Err("pseudo-header after a regular header".into());
        }
        let slot = match pseudo {
            b"method" => &mut head.method,
            b"scheme" => &mut head.scheme,
            b"authority" => &mut head.authority,
            b"path" => &mut head.path,
            other => {
                return Err(format!(
                    "unknown pseudo-header :{}",
                    String::from_utf8_lossy(other)
                ));
            }
        };
        if !slot.is_empty() {
            return Err(format!(
                "duplicate pseudo-header {}",
                String::from_utf8_lossy(name)
            ));
        }
        *slot = String::from_utf8(value.to_vec()).map_err(|_| "pseudo-header not UTF-8")?;
        return Ok(());
    }
    *regular_seen = true;
    if name.iter().any(u8::is_ascii_uppercase) {
        return Err("uppercase header name".into());
    }
    let name = HeaderName::from_bytes(name).map_err(|_| "invalid header name")?;
    if is_connection_specific(&name, value) {
        return Err(format!("connection-specific header {name}"));
    }
    let value = HeaderValue::from_bytes(value).map_err(|_| "invalid header value")?;
    head.headers.append(name, value);
    Ok(())
}

pub(crate) fn is_connection_specific(name: &HeaderName, value: &[u8]) -> bool {
    use http::header;
    name == header::CONNECTION
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
        || (name == header::TE && value != b"trailers")
}

pub(crate) fn put_str(dst: &mut Vec<u8>, s: &[u8]) {
    put_int(dst, 0x00, 7, s.len());
    dst.extend_from_slice(s);
}

/// An integer with an N-bit prefix (RFC 7541 section 5.1); `first` holds the bits above it.
pub(crate) fn put_int(dst: &mut Vec<u8>, first: u8, prefix_bits: u32, mut value: usize) {
    let max = (1usize << prefix_bits) - 1;
    if value < max {
        dst.push(first | value as u8);
        return;
    }
    dst.push(first | max as u8);
    value -= max;
    while value >= 128 {
        dst.push((value % 128) as u8 | 0x80);
        value /= 128;
    }
    dst.push(value as u8);
}

#[cfg(test)]
mod tests;
