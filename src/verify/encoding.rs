//! How a signature is written as text: hex (either case) or standard base64.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_PAD_INDIFFERENT};
use serde::Deserialize;

use super::VerifyError;

/// The text encoding of a signature in a header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// Hexadecimal digits; upper and lower case are both accepted.
    #[default]
    Hex,
    /// Standard base64 (`+` and `/`); padding may be left out.
    Base64,
}

impl Encoding {
    /// Decodes a signature that must be exactly `len` bytes long.
    ///
    /// The text length is checked before decoding, so an oversized value costs nothing.
    pub(crate) fn decode(
        self,
        text: &str,
        len: usize,
        label: &'static str,
    ) -> Result<Vec<u8>, VerifyError> {
        let malformed = VerifyError::Malformed(label);
        let bytes = match self {
            Encoding::Hex if text.len() == len * 2 => hex::decode(text).ok(),
            Encoding::Base64 if text.len() <= base64::encoded_len(len, true).unwrap_or(0) => {
                STANDARD_PAD_INDIFFERENT.decode(text).ok()
            }
            _ => None,
        };
        bytes.filter(|b| b.len() == len).ok_or(malformed)
    }

    /// Encodes a signature the way senders write it: lowercase hex, or padded base64.
    pub(crate) fn encode(self, bytes: &[u8]) -> String {
        match self {
            Encoding::Hex => hex::encode(bytes),
            Encoding::Base64 => STANDARD.encode(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LABEL: &str = "signature";

    #[test]
    fn hex_compares_case_insensitively() {
        let lower = Encoding::Hex.decode("0aff", 2, LABEL);
        let upper = Encoding::Hex.decode("0AFF", 2, LABEL);
        assert_eq!(lower, Ok(vec![0x0a, 0xff]));
        assert_eq!(lower, upper);
    }

    #[test]
    fn wrong_length_non_hex_and_empty_are_malformed() {
        for bad in ["", "0a", "0aff00", "zzzz", "0a f"] {
            assert_eq!(
                Encoding::Hex.decode(bad, 2, LABEL),
                Err(VerifyError::Malformed(LABEL)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn base64_accepts_padding_or_none() {
        assert_eq!(Encoding::Base64.decode("AAE=", 2, LABEL), Ok(vec![0, 1]));
        assert_eq!(Encoding::Base64.decode("AAE", 2, LABEL), Ok(vec![0, 1]));
    }

    #[test]
    fn base64_wrong_length_bad_alphabet_and_empty_are_malformed() {
        for bad in ["", "AA==", "AAEC", "AA-=", "!!!!", "AAE=AAE="] {
            assert_eq!(
                Encoding::Base64.decode(bad, 2, LABEL),
                Err(VerifyError::Malformed(LABEL)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn encode_then_decode_round_trips() {
        for encoding in [Encoding::Hex, Encoding::Base64] {
            let text = encoding.encode(&[1, 2, 3, 250]);
            assert_eq!(encoding.decode(&text, 4, LABEL), Ok(vec![1, 2, 3, 250]));
        }
    }
}
