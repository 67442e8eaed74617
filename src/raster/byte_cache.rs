//! The compressed bytes a COG reader keeps: **runs** of files' bytes — the
//! start of a file, read with its header, and the ranges fetched for
//! windows — so that a block a neighbouring window needs is not fetched
//! again. A window looks its file up once and finds each block in a run by
//! its byte range; a run is kept whole (no copy per block), and the budget
//! counts every byte of it. Runs being fetched are listed too, so that a
//! window needing bytes another window's fetch will bring waits for that
//! fetch instead of asking the store again.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::{BoxFuture, Shared};

/// A run some spawned task is fetching (its error as text: shared).
pub(crate) type PendingRun = Shared<BoxFuture<'static, Result<Bytes, Arc<str>>>>;

/// Where the bytes of a range are.
pub(crate) enum Found {
    /// Kept: the bytes.
    Kept(Bytes),
    /// Being fetched as part of the run starting at the given offset.
    Pending(PendingRun, u64),
    /// Neither.
    Missing,
}

/// A kept run, with its place in the cache's order.
struct Kept {
    bytes: Bytes,
    /// Its latest entry in [`ByteCache::order`].
    seq: u64,
}

/// The runs of one file.
#[derive(Default)]
pub(crate) struct FileRuns {
    /// Kept runs by start offset (they may overlap).
    kept: BTreeMap<u64, Kept>,
    /// The length of the longest run kept so far: a lookup looks back no
    /// further than this from the range's start.
    longest: u64,
    /// Runs being fetched, each by a spawned task: waiting for one is safe
    /// because the task runs on its own, whoever started it (a partition's
    /// stream that stops being polled does not hold the others up).
    pending: Vec<(Range<u64>, PendingRun)>,
}

impl FileRuns {
    /// The kept run holding bytes `range`, with its start.
    fn kept_run(&self, range: &Range<u64>) -> Option<(u64, &Bytes)> {
        let from = range.start.saturating_sub(self.longest);
        self.kept
            .range(from..=range.start)
            .rev()
            .find(|(&s, k)| range.end - s <= k.bytes.len() as u64)
            .map(|(&s, k)| (s, &k.bytes))
    }

    /// Whether no run is kept or pending (the file is dropped then).
    fn is_empty(&self) -> bool {
        self.kept.is_empty() && self.pending.is_empty()
    }

    /// Where bytes `range` of the file are.
    pub(crate) fn find(&self, range: Range<u64>) -> Found {
        if let Some((s, b)) = self.kept_run(&range) {
            return Found::Kept(b.slice((range.start - s) as usize..(range.end - s) as usize));
        }
        match self
            .pending
            .iter()
            .find(|(r, _)| r.start <= range.start && range.end <= r.end)
        {
            Some((r, p)) => Found::Pending(p.clone(), r.start),
            None => Found::Missing,
        }
    }
}

/// Runs of files' bytes by location, at most `budget` bytes kept in all,
/// the least recently kept or [touched](Self::touch) dropped first.
pub(crate) struct ByteCache {
    files: HashMap<Arc<str>, FileRuns, ahash::RandomState>,
    /// Kept runs, least recent first: (location, start, seq). An entry
    /// whose seq is no longer its run's is stale (the run was touched or
    /// replaced since) and skipped.
    order: VecDeque<(Arc<str>, u64, u64)>,
    /// The next entry's seq.
    seq: u64,
    /// Runs kept.
    runs: usize,
    bytes: usize,
    budget: usize,
}

impl std::fmt::Debug for ByteCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ByteCache")
            .field("files", &self.files.len())
            .field("runs", &self.runs)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl ByteCache {
    /// A cache keeping at most `budget` bytes.
    pub(crate) fn new(budget: usize) -> Self {
        ByteCache {
            files: HashMap::default(),
            order: VecDeque::new(),
            seq: 0,
            runs: 0,
            bytes: 0,
            budget,
        }
    }

    /// The runs of the file at `location`, if any are kept or pending.
    pub(crate) fn file(&self, location: &str) -> Option<&FileRuns> {
        self.files.get(location)
    }

    /// Bytes kept in all.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Keeps `run`, bytes `start..` of the file at `location` (not when it
    /// is over an eighth of the budget, or a run as long is kept from the
    /// same start), dropping the oldest runs beyond the budget.
    pub(crate) fn keep(&mut self, location: &Arc<str>, start: u64, run: Bytes) {
        self.keep_as(location, start, run, true)
    }

    /// Keeps `run` as [`Self::keep`] does, but as the least recent run:
    /// the first dropped unless [touched](Self::touch) before.
    pub(crate) fn keep_least_recent(&mut self, location: &Arc<str>, start: u64, run: Bytes) {
        self.keep_as(location, start, run, false)
    }

    fn keep_as(&mut self, location: &Arc<str>, start: u64, run: Bytes, recent: bool) {
        if run.is_empty() || run.len() > self.budget / 8 {
            return;
        }
        let f = self.files.entry(location.clone()).or_default();
        let len = run.len();
        let seq = self.seq;
        match f.kept.insert(start, Kept { bytes: run, seq }) {
            Some(old) if old.bytes.len() >= len => {
                // put it back: the longer run stays
                f.kept.insert(start, old);
                return;
            }
            Some(old) => self.bytes -= old.bytes.len(),
            None => self.runs += 1,
        }
        f.longest = f.longest.max(len as u64);
        if recent {
            self.order.push_back((location.clone(), start, seq));
        } else {
            self.order.push_front((location.clone(), start, seq));
        }
        self.seq += 1;
        self.bytes += len;
        while self.bytes > self.budget {
            let Some((loc, s, seq)) = self.order.pop_front() else {
                break;
            };
            if let Some(f) = self.files.get_mut(&loc) {
                if f.kept.get(&s).is_some_and(|k| k.seq == seq) {
                    if let Some(k) = f.kept.remove(&s) {
                        self.bytes -= k.bytes.len();
                        self.runs -= 1;
                    }
                }
                if f.is_empty() {
                    self.files.remove(&loc);
                }
            }
        }
    }

    /// Makes the kept run holding bytes `range` of the file at `location`
    /// the most recent, as if kept now (a run read ahead for rows still to
    /// come is dropped after those read since); false when none holds them.
    pub(crate) fn touch(&mut self, location: &str, range: Range<u64>) -> bool {
        let Some((key, f)) = self.files.get_key_value(location) else {
            return false;
        };
        let Some((start, _)) = f.kept_run(&range) else {
            return false;
        };
        let key = key.clone();
        let seq = self.seq;
        self.seq += 1;
        if let Some(k) = self
            .files
            .get_mut(location)
            .and_then(|f| f.kept.get_mut(&start))
        {
            k.seq = seq;
        }
        self.order.push_back((key, start, seq));
        // stale entries are dropped once they outnumber the live ones
        if self.order.len() > 2 * self.runs + 1024 {
            let files = &self.files;
            self.order.retain(|(loc, s, seq)| {
                files
                    .get(loc)
                    .and_then(|f| f.kept.get(s))
                    .is_some_and(|k| k.seq == *seq)
            });
        }
        true
    }

    /// Notes that bytes `range` of the file at `location` are being fetched.
    pub(crate) fn begin(&mut self, location: &Arc<str>, range: Range<u64>, pending: PendingRun) {
        let f = self.files.entry(location.clone()).or_default();
        f.pending.push((range, pending));
    }

    /// Notes that the fetch of bytes `range` of the file at `location` has
    /// ended (then [`Self::keep`] them, if it succeeded).
    pub(crate) fn end(&mut self, location: &str, range: &Range<u64>) {
        if let Some(f) = self.files.get_mut(location) {
            if let Some(k) = f.pending.iter().position(|(r, _)| r == range) {
                drop(f.pending.swap_remove(k));
            }
            if f.is_empty() {
                self.files.remove(location);
            }
        }
    }
}

/// The runs to fetch for byte `ranges` of one file: sorted, and merged
/// where no more than `gap` bytes lie between them (object_store's rule for
/// `get_ranges`, so that it merges them no further and each run comes back
/// as bytes of its own).
pub(crate) fn runs_of(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut runs: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match runs.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => runs.push(r),
        }
    }
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    fn bytes(start: u64, n: usize) -> Bytes {
        (0..n).map(|i| (start as usize + i) as u8).collect()
    }

    fn kept(c: &ByteCache, loc: &str, r: Range<u64>) -> Option<Bytes> {
        match c.file(loc)?.find(r) {
            Found::Kept(b) => Some(b),
            _ => None,
        }
    }

    /// A range inside any kept run (overlapping runs, a short run starting
    /// after a long one) comes back as the file's bytes; one that no run
    /// holds whole is not found.
    #[test]
    fn ranges_are_found_in_any_run_holding_them() {
        let loc: Arc<str> = Arc::from("/a.tif");
        let mut c = ByteCache::new(1 << 20);
        c.keep(&loc, 0, bytes(0, 1000));
        c.keep(&loc, 900, bytes(900, 50));
        c.keep(&loc, 5000, bytes(5000, 100));
        for r in [0..10, 10..1000, 920..940, 950..1000, 5000..5100, 5099..5100] {
            let want = bytes(r.start, (r.end - r.start) as usize);
            assert_eq!(kept(&c, "/a.tif", r.clone()), Some(want), "{r:?}");
        }
        for r in [990..1010, 4999..5001, 5050..5101, 2000..2001] {
            assert!(kept(&c, "/a.tif", r.clone()).is_none(), "{r:?}");
        }
        assert!(c.file("/b.tif").is_none());
    }

    /// The budget holds: the oldest runs go first, a run over an eighth of
    /// the budget is not kept, a longer run from the same start replaces a
    /// shorter one (counted once), and a file with nothing left is dropped.
    #[test]
    fn oldest_runs_go_first_within_the_budget() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("/a"), Arc::from("/b"));
        let mut c = ByteCache::new(800);
        c.keep(&a, 0, bytes(0, 100));
        c.keep(&b, 0, bytes(0, 100));
        c.keep(&a, 0, bytes(0, 50)); // shorter: ignored
        assert_eq!(c.bytes(), 200);
        c.keep(&a, 0, bytes(0, 100)); // as long: ignored
        assert_eq!(c.bytes(), 200);
        c.keep(&b, 1000, bytes(1000, 101)); // over budget / 8
        assert!(kept(&c, "/b", 1000..1001).is_none());
        for k in 0..6 {
            c.keep(&b, 200 * (k + 1), bytes(200 * (k + 1), 100));
        }
        // 8 runs of 100 bytes: all kept
        assert_eq!(c.bytes(), 800);
        assert!(kept(&c, "/a", 0..100).is_some());
        c.keep(&b, 5000, bytes(5000, 100));
        assert_eq!(c.bytes(), 800);
        assert!(kept(&c, "/a", 0..1).is_none(), "oldest dropped");
        assert!(c.file("/a").is_none(), "an empty file is dropped");
        assert!(kept(&c, "/b", 0..100).is_some());
        c.keep(&b, 5000, bytes(5000, 100));
        assert_eq!(c.bytes(), 800);
    }

    /// A range inside a run being fetched is found as pending, with the
    /// run's start; once the fetch ends it is not.
    #[test]
    fn pending_runs_are_found_until_they_end() {
        let loc: Arc<str> = Arc::from("/a");
        let mut c = ByteCache::new(1 << 20);
        let p: PendingRun = async { Ok(bytes(100, 50)) }.boxed().shared();
        c.begin(&loc, 100..150, p);
        match c.file("/a").unwrap().find(120..130) {
            Found::Pending(_, s) => assert_eq!(s, 100),
            _ => panic!("not pending"),
        }
        assert!(matches!(
            c.file("/a").unwrap().find(140..151),
            Found::Missing
        ));
        c.end("/a", &(100..150));
        assert!(c.file("/a").is_none());
    }

    #[test]
    fn runs_merge_ranges_at_most_gap_apart() {
        assert_eq!(
            runs_of(&[30..40, 0..10, 12..20, 100..110, 105..108], 2),
            vec![0..20, 30..40, 100..110]
        );
        assert_eq!(runs_of(&[0..10, 13..20], 2), vec![0..10, 13..20]);
        assert_eq!(runs_of(&[], 2), Vec::<Range<u64>>::new());
    }

    /// A run touched is dropped after those kept before the touch; a run
    /// kept as least recent goes first unless touched; stale entries of
    /// the order do not drop a run touched since, and do not pile up.
    #[test]
    fn touched_runs_go_last_and_least_recent_first() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("/a"), Arc::from("/b"));
        let mut c = ByteCache::new(800);
        c.keep(&a, 0, bytes(0, 100));
        c.keep(&a, 200, bytes(200, 100));
        c.keep_least_recent(&b, 0, bytes(0, 100));
        c.keep_least_recent(&b, 200, bytes(200, 100));
        assert!(c.touch("/a", 10..20));
        assert!(c.touch("/b", 250..300));
        assert!(!c.touch("/a", 90..110), "no run holds it");
        assert!(!c.touch("/c", 0..1));
        // order now (oldest first): /b@0, /a@200, /a@0, /b@200
        for k in 0..5 {
            c.keep(&a, 1000 + 100 * k, bytes(1000 + 100 * k, 100));
        }
        assert_eq!(c.bytes(), 800);
        assert!(kept(&c, "/b", 0..1).is_none(), "least recent first");
        assert!(kept(&c, "/a", 200..201).is_some());
        c.keep(&a, 2000, bytes(2000, 100));
        assert!(kept(&c, "/a", 200..201).is_none());
        assert!(kept(&c, "/a", 0..1).is_some(), "touched: dropped after");
        c.keep(&a, 2100, bytes(2100, 100));
        assert!(kept(&c, "/a", 0..1).is_none());
        assert!(kept(&c, "/b", 200..300).is_some(), "touched last");
        c.keep(&a, 2200, bytes(2200, 100));
        assert!(kept(&c, "/b", 200..300).is_none());
        assert_eq!(c.bytes(), 800);
        // many touches of one run leave the order bounded
        for _ in 0..10_000 {
            assert!(c.touch("/a", 2200..2300));
        }
        assert!(c.order.len() <= 2 * c.runs + 1024 + 1, "{}", c.order.len());
        assert_eq!(c.runs, 8);
    }
}
