//! Id lookups whose growth never stalls a command for long.
//!
//! A single hash map doubles when full and rehashes every entry inside the insert that
//! crossed the threshold: at a few million transaction ids that is one command stalled
//! for tens of milliseconds. `ShardedIndex` splits the entries over `SHARDS` maps by a
//! hash of the key that is independent of the maps' own hashing, so each map holds about
//! 1/SHARDS of the entries and one insert rehashes at most that much. Lookups cost one
//! extra multiply. Like every map in the engine it is only looked up, never iterated.
//!
//! `ChunkedVec` is the matching fix for append-only storage: it grows by whole chunks,
//! so an append never copies what is already stored.

use std::hash::Hash;

use rustc_hash::FxHashMap;

/// Number of maps an index is split into.
pub(crate) const SHARDS: usize = 64;
/// Entries each map has room for from the start: a steady state whose size wobbles
/// around a few thousand entries never grows a map (every growth allocates).
const SHARD_CAPACITY_FLOOR: usize = 256;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();
const _: () = assert!(SHARDS.is_power_of_two());

/// Keys that can pick their shard. The mix must differ from FxHash (used inside each
/// map), or every key in a shard would share the top hash bits the maps probe with.
pub(crate) trait ShardKey: Hash + Eq + Copy {
    fn shard_bits(&self) -> u64;
}

impl ShardKey for u64 {
    #[inline]
    fn shard_bits(&self) -> u64 {
        // A splitmix64 finaliser: every input bit reaches the top bits.
        let mut x = *self;
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^ (x >> 31)
    }
}

impl ShardKey for (u32, u64) {
    #[inline]
    fn shard_bits(&self) -> u64 {
        (self.1 ^ (self.0 as u64).rotate_left(32)).shard_bits()
    }
}

#[derive(Clone)]
pub(crate) struct ShardedIndex<K, V> {
    shards: Vec<FxHashMap<K, V>>,
    len: usize,
}

impl<K: ShardKey, V: Copy> ShardedIndex<K, V> {
    pub(crate) fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| FxHashMap::with_capacity_and_hasher(SHARD_CAPACITY_FLOOR, Default::default()))
            .collect();
        ShardedIndex { shards, len: 0 }
    }

    #[inline]
    fn shard(key: &K) -> usize {
        (key.shard_bits() >> (64 - SHARD_BITS)) as usize
    }

    #[inline]
    pub(crate) fn get(&self, key: &K) -> Option<&V> {
        self.shards[Self::shard(key)].get(key)
    }

    #[inline]
    pub(crate) fn contains_key(&self, key: &K) -> bool {
        self.shards[Self::shard(key)].contains_key(key)
    }

    #[inline]
    pub(crate) fn insert(&mut self, key: K, value: V) -> Option<V> {
        let previous = self.shards[Self::shard(&key)].insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    #[inline]
    pub(crate) fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.shards[Self::shard(key)].remove(key);
        if removed.is_some() {
            self.len -= 1;
        }
        removed
    }

    pub(crate) fn len(&self) -> usize {
        debug_assert_eq!(self.len, self.shards.iter().map(|s| s.len()).sum::<usize>());
        self.len
    }
}

/// Entries per chunk of a `ChunkedVec`.
const CHUNK: usize = 1 << 14;

/// An append-only vector that never moves what it stores: it grows by whole chunks.
#[derive(Clone)]
pub(crate) struct ChunkedVec<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> ChunkedVec<T> {
    pub(crate) fn new() -> Self {
        ChunkedVec { chunks: Vec::new(), len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        if self.len % CHUNK == 0 {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let chunk = self.chunks.last_mut().expect("a chunk with room");
        debug_assert!(chunk.len() < CHUNK);
        chunk.push(value);
        self.len += 1;
    }

    #[inline]
    pub(crate) fn get(&self, at: usize) -> &T {
        &self.chunks[at / CHUNK][at % CHUNK]
    }

    #[inline]
    pub(crate) fn get_mut(&mut self, at: usize) -> &mut T {
        &mut self.chunks[at / CHUNK][at % CHUNK]
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_keys_spread_over_every_shard() {
        let mut counts = [0usize; SHARDS];
        for key in 0u64..64_000 {
            counts[ShardedIndex::<u64, u32>::shard(&key)] += 1;
        }
        // Within 25% of an even split.
        assert!(counts.iter().all(|&c| (750..=1250).contains(&c)), "{counts:?}");
        let mut pairs = [0usize; SHARDS];
        for account in 0u32..8 {
            for client in 0u64..8_000 {
                pairs[ShardedIndex::<(u32, u64), u32>::shard(&(account, client))] += 1;
            }
        }
        assert!(pairs.iter().all(|&c| (750..=1250).contains(&c)), "{pairs:?}");
    }

    #[test]
    fn index_and_vec_behave_like_their_plain_forms() {
        let mut index = ShardedIndex::<u64, u32>::new();
        let mut vec = ChunkedVec::new();
        for i in 0..100_000u64 {
            assert_eq!(index.insert(i * 7, i as u32), None);
            vec.push(i);
        }
        assert_eq!(index.insert(7, 99), Some(1));
        assert_eq!(index.len(), 100_000);
        assert_eq!(index.get(&14), Some(&2));
        assert_eq!(index.remove(&14), Some(2));
        assert!(!index.contains_key(&14));
        assert_eq!(index.len(), 99_999);
        assert_eq!(vec.len(), 100_000);
        assert_eq!(*vec.get(CHUNK + 3), CHUNK as u64 + 3);
        *vec.get_mut(5) = 42;
        assert_eq!(vec.iter().copied().nth(5), Some(42));
        assert_eq!(vec.iter().count(), 100_000);
    }
}
