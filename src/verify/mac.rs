//! HMAC over a message given in parts, and the constant-time check against each secret.

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::config::secret::Secret;

/// The hash function under an HMAC.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// HMAC-SHA1, for older senders only.
    Sha1,
    /// HMAC-SHA256, what almost every sender uses.
    #[default]
    Sha256,
    /// HMAC-SHA512.
    Sha512,
}

impl Algorithm {
    /// The length of a tag, in bytes.
    pub(crate) fn output_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Sha256 => 32,
            Algorithm::Sha512 => 64,
        }
    }

    /// The HMAC of the concatenation of `parts`, keyed with `key`.
    pub(crate) fn compute(self, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        match self {
            Algorithm::Sha1 => tag::<Hmac<sha1::Sha1>>(key, parts),
            Algorithm::Sha256 => tag::<Hmac<sha2::Sha256>>(key, parts),
            Algorithm::Sha512 => tag::<Hmac<sha2::Sha512>>(key, parts),
        }
    }

    /// The position of the first secret whose HMAC of `parts` equals one of `candidates`.
    ///
    /// Each comparison is constant time; which secret matched is not a secret.
    pub(crate) fn find_key(
        self,
        secrets: &[Secret],
        parts: &[&[u8]],
        candidates: &[Vec<u8>],
    ) -> Option<usize> {
        secrets.iter().position(|secret| {
            let expected = self.compute(secret.expose(), parts);
            candidates
                .iter()
                .any(|candidate| bool::from(expected.as_slice().ct_eq(candidate.as_slice())))
        })
    }
}

fn tag<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    // HMAC is defined for keys of every length (long keys are hashed, short ones padded), so
    // building it from a slice cannot fail.
    #[allow(clippy::expect_used)]
    let mut mac = <M as KeyInit>::new_from_slice(key).expect("HMAC accepts any key length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2: key "Jefe", data "what do ya want for nothing?".
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";

    #[test]
    fn sha256_matches_rfc_4231() {
        let expected = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
        assert_eq!(
            hex::encode(Algorithm::Sha256.compute(KEY, &[DATA])),
            expected
        );
    }

    #[test]
    fn sha512_matches_rfc_4231() {
        let expected = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea250554\
                        9758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
        assert_eq!(
            hex::encode(Algorithm::Sha512.compute(KEY, &[DATA])),
            expected
        );
    }

    #[test]
    fn sha1_matches_rfc_2202() {
        let expected = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
        assert_eq!(hex::encode(Algorithm::Sha1.compute(KEY, &[DATA])), expected);
    }

    #[test]
    fn parts_are_one_message() {
        let whole = Algorithm::Sha256.compute(KEY, &[DATA]);
        let split = Algorithm::Sha256.compute(KEY, &[&DATA[..4], &DATA[4..]]);
        assert_eq!(whole, split);
    }

    #[test]
    fn every_secret_is_tried_in_order() {
        let secrets = [Secret::new("old"), Secret::new("Jefe"), Secret::new("Jefe")];
        let tag = Algorithm::Sha256.compute(KEY, &[DATA]);
        assert_eq!(
            Algorithm::Sha256.find_key(&secrets, &[DATA], &[tag]),
            Some(1)
        );
        assert_eq!(
            Algorithm::Sha256.find_key(&secrets, &[DATA], &[vec![0; 32]]),
            None
        );
    }

    #[test]
    fn output_len_is_the_tag_length() {
        for algorithm in [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512] {
            assert_eq!(algorithm.compute(b"k", &[]).len(), algorithm.output_len());
        }
    }
}
