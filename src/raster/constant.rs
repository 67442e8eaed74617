//! Constant blocks: COG blocks whose decoded content is one value.
//!
//! GFM's COGs are mostly such blocks — all nodata (255) outside a swath, all
//! 0 over dry land — and a constant block compresses to a few hundred bytes
//! that are the same in every file of the same codec and block size. So a
//! block is recognised by its compressed bytes: the first time a small block
//! is decoded its content is checked once, and when it is one value the
//! (codec, compressed bytes) → value pair is remembered; every later block
//! with the same bytes is that value without being inflated. A window whose
//! blocks are all one value is handed on as [`Pixels::Constant`], never
//! materialised: the fuse pastes a value (nothing at all for nodata).
//!
//! Remembering by content is exact: the same compressed bytes under the same
//! codec, predictor and block shape decode to the same bytes.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;

/// Only blocks this small (compressed) are checked and remembered: a
/// constant 512 x 512 block deflates to ~270 bytes; a block with content
/// does not fit.
pub(crate) const MAX_CONSTANT_BYTES: usize = 4096;

/// Distinct constant blocks remembered (a handful in practice: one per
/// value, codec and block size). Past this, new ones are decoded as usual.
const MAX_REMEMBERED: usize = 4096;

/// The pixels of a decoded window.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pixels {
    /// Every pixel is this value.
    Constant(u8),
    /// Row-major pixels.
    Data(Vec<u8>),
}

impl Pixels {
    /// The pixels as bytes (`len` of them).
    #[cfg(test)]
    pub(crate) fn into_vec(self, len: usize) -> Vec<u8> {
        match self {
            Pixels::Constant(v) => vec![v; len],
            Pixels::Data(d) => d,
        }
    }
}

/// (codec signature, compressed bytes) → the value the block decodes to.
/// Hashed with aHash: the keys are a few hundred bytes, hashed once per
/// small block decoded (SipHash was ~1 % of a scan's CPU).
type Memo = HashMap<(u64, Bytes), u8, ahash::RandomState>;
static REMEMBERED: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);

/// The value block `bytes` (under codec signature `codec`) was seen to
/// decode to, if it was seen constant.
pub(crate) fn recall(codec: u64, bytes: &Bytes) -> Option<u8> {
    if bytes.len() > MAX_CONSTANT_BYTES {
        return None;
    }
    let map = REMEMBERED.lock().ok()?;
    map.get(&(codec, bytes.clone())).copied()
}

/// Remembers that `bytes` decodes to `value` everywhere.
pub(crate) fn remember(codec: u64, bytes: &Bytes, value: u8) {
    if bytes.len() > MAX_CONSTANT_BYTES {
        return;
    }
    if let Ok(mut map) = REMEMBERED.lock() {
        if map.len() < MAX_REMEMBERED {
            // a copy: `bytes` may be a slice of a larger merged read
            map.insert((codec, Bytes::copy_from_slice(bytes)), value);
        }
    }
}

/// The one value of `v`, if all its bytes are equal (`None` when empty).
/// Branch-free within 4 KiB runs, so it vectorises.
pub(crate) fn uniform(v: &[u8]) -> Option<u8> {
    let first = *v.first()?;
    v.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &b| acc | (b ^ first)) == 0)
        .then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_values() {
        assert_eq!(uniform(&[]), None);
        assert_eq!(uniform(&[7; 10_000]), Some(7));
        let mut v = vec![255u8; 10_000];
        assert_eq!(uniform(&v), Some(255));
        v[9_999] = 254;
        assert_eq!(uniform(&v), None);
        v[9_999] = 255;
        v[0] = 0;
        assert_eq!(uniform(&v), None);
    }

    #[test]
    fn remembered_by_codec_and_bytes() {
        let b = Bytes::from_static(b"a constant block's compressed bytes");
        assert_eq!(recall(1, &b), None);
        remember(1, &b, 255);
        assert_eq!(recall(1, &b), Some(255));
        // another codec or block shape: not the same block
        assert_eq!(recall(2, &b), None);
        // large blocks are never remembered
        let big = Bytes::from(vec![0u8; MAX_CONSTANT_BYTES + 1]);
        remember(1, &big, 0);
        assert_eq!(recall(1, &big), None);
    }
}
