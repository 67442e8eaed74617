//! Pixel rows of one value, shared instead of materialised.
//!
//! Most (time slice, chunk) rows of a GFM scan are one value throughout: a
//! chunk the slice's swath misses is all nodata, a dry area far from water
//! all 0. The scan hands such a row out as a slice of a process-wide buffer
//! of that value ([`shared`]) — no megabyte to fill per row — and the
//! aggregates recognise it by where its bytes live ([`value_of`]), so they
//! fold it as a value (nothing at all for nodata) instead of reading it.
//!
//! The row's bytes are the value repeated, as any reader sees them: a
//! consumer that does not ask [`value_of`] (a filter, a cast, a UDF of the
//! user's) reads the same bytes as if they had been written out. The
//! buffers are immutable and live as long as the process, so an address
//! inside one always means that value.

use std::sync::RwLock;

use arrow::buffer::Buffer;

/// The longest row shared (longer rows are materialised as usual): 64 MiB,
/// a chunk of 8192 x 8192 pixels.
pub const MAX_SHARED: usize = 64 << 20;

/// The smallest buffer made: a 1000 px chunk's megabyte, rounded up.
const MIN_BUFFER: usize = 1 << 20;

/// (value, buffer of that value) — a handful of entries: a value gets a
/// larger buffer only when a longer row asks, by doubling, so its buffers
/// total at most twice its largest.
static SHARED: RwLock<Vec<(u8, Buffer)>> = RwLock::new(Vec::new());

/// `len` bytes of `value`, sharing the process-wide buffer of that value
/// (no allocation once it is long enough); `None` when `len` is over
/// [`MAX_SHARED`].
pub fn shared(value: u8, len: usize) -> Option<Buffer> {
    if len > MAX_SHARED {
        return None;
    }
    let find = |all: &[(u8, Buffer)]| {
        all.iter()
            .find(|(v, b)| *v == value && b.len() >= len)
            .map(|(_, b)| b.slice_with_length(0, len))
    };
    if let Some(b) = find(&SHARED.read().unwrap_or_else(|e| e.into_inner())) {
        return Some(b);
    }
    let mut all = SHARED.write().unwrap_or_else(|e| e.into_inner());
    if let Some(b) = find(&all) {
        return Some(b);
    }
    let size = len.next_power_of_two().max(MIN_BUFFER);
    let buffer = Buffer::from_vec(vec![value; size]);
    let out = buffer.slice_with_length(0, len);
    all.push((value, buffer));
    Some(out)
}

/// The value of every byte of `bytes` when they lie in a buffer made by
/// [`shared`] (a constant row as the scan emitted it); `None` otherwise —
/// including for bytes that merely happen to be all one value, which the
/// caller then reads as usual.
pub fn value_of(bytes: &[u8]) -> Option<u8> {
    if bytes.is_empty() {
        return None;
    }
    let (p, n) = (bytes.as_ptr() as usize, bytes.len());
    let all = SHARED.read().unwrap_or_else(|e| e.into_inner());
    all.iter().find_map(|(v, b)| {
        let start = b.as_ptr() as usize;
        (p >= start && p + n <= start + b.len()).then_some(*v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_rows_are_their_value_and_recognised() {
        for (v, len) in [(255u8, 1_000_000), (0, 1), (1, 250 * 130), (255, 3_000_000)] {
            let b = shared(v, len).unwrap();
            assert_eq!(b.len(), len);
            assert!(b.as_slice().iter().all(|&x| x == v));
            assert_eq!(value_of(b.as_slice()), Some(v));
            // a part of a shared row is that value too
            assert_eq!(value_of(&b.as_slice()[len / 2..]), Some(v));
        }
        // the same value's rows share one buffer: no allocation per row
        let (a, b) = (shared(7, 1000).unwrap(), shared(7, 500).unwrap());
        assert_eq!(a.as_ptr(), b.as_ptr());
        // bytes that are one value but not shared are read as bytes
        let own = vec![255u8; 1000];
        assert_eq!(value_of(&own), None);
        assert_eq!(value_of(&[]), None);
        assert!(shared(255, MAX_SHARED + 1).is_none());
    }
}
