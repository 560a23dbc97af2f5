//! How a body is framed and labelled: `Content-Encoding` (compressed bodies are inflated
//! under the same size cap as plain ones), `Transfer-Encoding` and `Content-Type`.

use std::io::Read;

use bytes::Bytes;
use flate2::bufread::{GzDecoder, ZlibDecoder};
use http::HeaderMap;

use super::answer::Rejection;
use super::body::{Charge, reserve_charged};

/// How a request body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// Not encoded.
    Identity,
    /// `gzip` (or `x-gzip`).
    Gzip,
    /// `deflate`: a zlib stream.
    Deflate,
}

/// Reads `Content-Encoding`; anything but one known encoding is `415`.
pub(super) fn content_encoding(headers: &HeaderMap) -> Result<Encoding, Rejection> {
    let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
    let Some(value) = values.next() else {
        return Ok(Encoding::Identity);
    };
    if values.next().is_some() {
        return Err(Rejection::UnsupportedEncoding);
    }
    let value = value.to_str().map_err(|_| Rejection::UnsupportedEncoding)?;
    match value.trim().to_ascii_lowercase().as_str() {
        "" | "identity" => Ok(Encoding::Identity),
        "gzip" | "x-gzip" => Ok(Encoding::Gzip),
        "deflate" => Ok(Encoding::Deflate),
        _ => Err(Rejection::UnsupportedEncoding),
    }
}

/// Refuses a `Transfer-Encoding` other than one `chunked` with `501`: the HTTP layer takes
/// the chunks apart once, and a coding under them (`gzip, chunked`, or `chunked` twice)
/// would leave coded bytes to be stored and forwarded as the body.
pub(super) fn transfer_coding(headers: &HeaderMap) -> Result<(), Rejection> {
    let mut chunked = 0;
    for value in headers.get_all(http::header::TRANSFER_ENCODING) {
        let text = value
            .to_str()
            .map_err(|_| Rejection::UnsupportedTransferCoding)?;
        for coding in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            if !coding.eq_ignore_ascii_case("chunked") {
                return Err(Rejection::UnsupportedTransferCoding);
            }
            chunked += 1;
        }
    }
    if chunked > 1 {
        return Err(Rejection::UnsupportedTransferCoding);
    }
    Ok(())
}

/// Refuses a `Content-Type` that is not visible ASCII, or that is sent twice with different
/// values, with `400`: it is stored and forwarded as it came, so it must be one value that
/// every upstream can read.
pub(super) fn content_type(headers: &HeaderMap) -> Result<(), Rejection> {
    let mut values = headers.get_all(http::header::CONTENT_TYPE).iter();
    let Some(first) = values.next() else {
        return Ok(());
    };
    if first.to_str().is_err() || values.any(|other| other != first) {
        return Err(Rejection::BadContentType);
    }
    Ok(())
}

/// Most gzip members one body may hold. Each member costs a decoder of its own, so a body
/// of empty members (20 bytes each) would buy a second of CPU per few megabytes; joined
/// files, the one use of several members, need a handful.
const MAX_GZIP_MEMBERS: usize = 64;

/// Inflates `wire` to at most `limit` bytes, charging what it inflates to `charge` as it
/// grows: a body that inflates past the cap is `413`, a corrupt one `400`, one the budget
/// cannot hold `503`. Runs on a blocking thread, since a large body is seconds of CPU; the
/// charge comes back with the bytes it covers.
///
/// Every gzip member is inflated (RFC 1952 allows several, up to [`MAX_GZIP_MEMBERS`] here),
/// and bytes after the end of the compressed data are refused: a signature covers them, so
/// none may be dropped unseen.
pub(super) async fn inflate(
    wire: Bytes,
    encoding: Encoding,
    limit: u64,
    mut charge: Charge,
) -> Result<(Bytes, Charge), Rejection> {
    if encoding == Encoding::Identity {
        return Ok((wire, charge));
    }
    tokio::task::spawn_blocking(move || {
        let mut inflated = Vec::new();
        let mut rest = &wire[..];
        for _ in 0..MAX_GZIP_MEMBERS {
            // The bufread decoders take no more input than their stream holds, so `rest`
            // is what follows it.
            rest = match encoding {
                Encoding::Gzip => {
                    read_stream(GzDecoder::new(rest), &mut inflated, limit, &mut charge)?
                }
                _ => read_stream(ZlibDecoder::new(rest), &mut inflated, limit, &mut charge)?,
            };
            if inflated.len() as u64 > limit {
                return Err(Rejection::TooLarge { limit });
            }
            match (encoding, rest) {
                (_, []) => return Ok((Bytes::from(inflated), charge)),
                (Encoding::Gzip, [0x1f, 0x8b, ..]) => continue,
                _ => return Err(Rejection::BadBody),
            }
        }
        Err(Rejection::BadBody)
    })
    .await
    .map_err(|_| Rejection::BadBody)?
}

/// A decoder over one compressed stream with its input.
trait Stream<'a>: Read {
    fn rest(self) -> &'a [u8];
}

impl<'a> Stream<'a> for GzDecoder<&'a [u8]> {
    fn rest(self) -> &'a [u8] {
        self.into_inner()
    }
}

impl<'a> Stream<'a> for ZlibDecoder<&'a [u8]> {
    fn rest(self) -> &'a [u8] {
        self.into_inner()
    }
}

/// Inflated bytes read at a time, each step charged before the next.
const INFLATE_STEP: usize = 64 << 10;

/// Appends one stream's inflated bytes to `out`, reading at most one byte past `limit`
/// in all, with the room they take charged before it is taken; the input that follows
/// the stream.
fn read_stream<'a>(
    mut stream: impl Stream<'a>,
    out: &mut Vec<u8>,
    limit: u64,
    charge: &mut Charge,
) -> Result<&'a [u8], Rejection> {
    let most = usize::try_from(limit.saturating_add(1)).unwrap_or(usize::MAX);
    loop {
        let room = most.saturating_sub(out.len());
        let step = room.min(INFLATE_STEP);
        reserve_charged(out, out.len() + step, most, charge)?;
        let read = (&mut stream)
            .take(step as u64)
            .read_to_end(out)
            .map_err(|_| Rejection::BadBody)?;
        // Short of the step, the stream has ended; at the room, the cap is reached.
        if read < step || room <= INFLATE_STEP {
            return Ok(stream.rest());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::Compression;
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn header_map(pairs: &[(&'static str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_bytes(value).unwrap());
        }
        map
    }

    #[test]
    fn only_chunked_is_a_transfer_coding_the_gateway_takes() {
        for ok in [
            &[][..],
            &[("transfer-encoding", &b"chunked"[..])],
            &[("transfer-encoding", b"Chunked")],
        ] {
            assert!(transfer_coding(&header_map(ok)).is_ok(), "{ok:?}");
        }
        for refused in [
            &b"gzip, chunked"[..],
            b"deflate,chunked",
            b"gzip",
            b"chunked, identity",
            b"chunked, chunked",
        ] {
            let got = transfer_coding(&header_map(&[("transfer-encoding", refused)]));
            assert!(
                matches!(got, Err(Rejection::UnsupportedTransferCoding)),
                "{:?}",
                String::from_utf8_lossy(refused)
            );
        }
        let twice = [
            ("transfer-encoding", &b"chunked"[..]),
            ("transfer-encoding", b"chunked"),
        ];
        assert!(transfer_coding(&header_map(&twice)).is_err());
    }

    #[test]
    fn a_content_type_is_one_value_of_visible_ascii() {
        let json = &b"application/json; charset=utf-8"[..];
        assert!(content_type(&header_map(&[])).is_ok());
        assert!(content_type(&header_map(&[("content-type", json)])).is_ok());
        assert!(
            content_type(&header_map(&[
                ("content-type", json),
                ("content-type", json)
            ]))
            .is_ok()
        );
        for refused in [
            &[("content-type", &b"application/json; charset=\xe9"[..])][..],
            &[("content-type", json), ("content-type", b"text/plain")],
        ] {
            assert!(
                matches!(
                    content_type(&header_map(refused)),
                    Err(Rejection::BadContentType)
                ),
                "{refused:?}"
            );
        }
    }

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("content-encoding", value.parse().unwrap());
        headers
    }

    /// Inflates with a budget that never runs out.
    async fn inflate(wire: Bytes, encoding: Encoding, limit: u64) -> Result<Bytes, Rejection> {
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(1 << 20));
        super::inflate(wire, encoding, limit, Charge::new(&budget))
            .await
            .map(|(bytes, _)| bytes)
    }

    #[tokio::test]
    async fn what_is_inflated_is_charged_as_it_grows_and_given_back() {
        let budget = std::sync::Arc::new(tokio::sync::Semaphore::new(256));
        let small = gzip(&vec![b'a'; 100 << 10]);
        let (bytes, charge) = super::inflate(small, Encoding::Gzip, 1 << 20, Charge::new(&budget))
            .await
            .unwrap();
        assert_eq!(bytes.len(), 100 << 10);
        // The room taken is charged: the bytes, and at most as much again as they grow.
        let held = 256 - budget.available_permits();
        assert!((100..=200).contains(&held), "{held} KiB held while kept");
        drop(charge);
        assert_eq!(budget.available_permits(), 256);

        // Past the budget, well under the cap: 503, and the budget is whole again.
        let large = gzip(&vec![b'a'; 512 << 10]);
        let err = super::inflate(large, Encoding::Gzip, 1 << 20, Charge::new(&budget)).await;
        assert!(matches!(err, Err(Rejection::Unavailable { .. })), "{err:?}");
        assert_eq!(budget.available_permits(), 256);
    }

    #[tokio::test]
    async fn gzip_bodies_are_inflated() {
        let inflated = inflate(gzip(b"{\"a\":1}"), Encoding::Gzip, 100)
            .await
            .unwrap();
        assert_eq!(&inflated[..], b"{\"a\":1}");
    }

    #[tokio::test]
    async fn a_small_bomb_that_inflates_past_the_cap_is_413() {
        let bomb = gzip(&vec![b'a'; 10 << 20]);
        assert!(bomb.len() < 64 << 10);
        let err = inflate(bomb, Encoding::Gzip, 1 << 20).await.unwrap_err();
        assert!(matches!(err, Rejection::TooLarge { .. }));
    }

    #[tokio::test]
    async fn every_gzip_member_is_inflated() {
        let wire = [gzip(b"{\"a\":"), gzip(b"1}")].concat();
        let inflated = inflate(Bytes::from(wire), Encoding::Gzip, 100)
            .await
            .unwrap();
        assert_eq!(&inflated[..], b"{\"a\":1}");
    }

    #[tokio::test]
    async fn a_body_of_more_gzip_members_than_allowed_is_a_bad_body() {
        let most = vec![gzip(b"")[..].to_vec(); MAX_GZIP_MEMBERS].concat();
        let inflated = inflate(Bytes::from(most.clone()), Encoding::Gzip, 100).await;
        assert_eq!(&inflated.unwrap()[..], b"");
        let one_more = [most, gzip(b"").to_vec()].concat();
        let err = inflate(Bytes::from(one_more), Encoding::Gzip, 100).await;
        assert!(matches!(err, Err(Rejection::BadBody)), "{err:?}");
    }

    #[tokio::test]
    async fn bytes_after_the_compressed_data_are_a_bad_body() {
        let gz = [&gzip(b"{}")[..], b"TRAILING"].concat();
        let err = inflate(Bytes::from(gz), Encoding::Gzip, 100).await;
        assert!(matches!(err, Err(Rejection::BadBody)), "{err:?}");

        let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(b"{}").unwrap();
        let whole = zlib.finish().unwrap();
        let inflated = inflate(Bytes::from(whole.clone()), Encoding::Deflate, 100).await;
        assert_eq!(&inflated.unwrap()[..], b"{}");
        let trailing = [&whole[..], b"{\"evil\":1}"].concat();
        let err = inflate(Bytes::from(trailing), Encoding::Deflate, 100).await;
        assert!(matches!(err, Err(Rejection::BadBody)), "{err:?}");
    }

    #[tokio::test]
    async fn corrupt_gzip_is_a_bad_body() {
        let err = inflate(Bytes::from_static(b"not gzip"), Encoding::Gzip, 100).await;
        assert!(matches!(err, Err(Rejection::BadBody)));
    }

    #[test]
    fn unknown_or_stacked_encodings_are_unsupported() {
        assert_eq!(
            content_encoding(&HeaderMap::new()).unwrap(),
            Encoding::Identity
        );
        assert_eq!(content_encoding(&headers("GZIP")).unwrap(), Encoding::Gzip);
        assert!(content_encoding(&headers("br")).is_err());
        assert!(content_encoding(&headers("gzip, gzip")).is_err());
    }
}
