//! Constant-time lookup of a presented token or password among the configured ones.
//!
//! Each configured value is kept as its SHA-256 digest, and the presented value is hashed
//! the same way, so every comparison runs over 32 bytes whatever the lengths involved, and
//! every entry is compared whether or not an earlier one matched.

use sha2::{Digest, Sha256};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};

/// The digest a value is compared by.
pub(crate) fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The position of the first digest equal to the digest of `presented`.
pub(crate) fn find(digests: &[[u8; 32]], presented: &[u8]) -> Option<usize> {
    let presented = digest(presented);
    let mut found = Choice::from(0);
    let mut index = 0u64;
    for (i, candidate) in (0u64..).zip(digests) {
        let hit = candidate.ct_eq(&presented) & !found;
        index.conditional_assign(&i, hit);
        found |= hit;
    }
    // `index` counts entries of a slice, so it fits in usize.
    bool::from(found).then(|| usize::try_from(index).unwrap_or(usize::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_equal_entry_is_found() {
        let digests = [digest(b"a"), digest(b"b"), digest(b"b")];
        assert_eq!(find(&digests, b"b"), Some(1));
        assert_eq!(find(&digests, b"a"), Some(0));
    }

    #[test]
    fn prefixes_extensions_and_empty_values_do_not_match() {
        let digests = [digest(b"token")];
        for presented in [&b"tok"[..], b"token!", b"", b"TOKEN"] {
            assert_eq!(find(&digests, presented), None);
        }
    }
}
