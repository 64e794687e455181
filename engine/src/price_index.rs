//! An ordered map from price (in ticks) to a level slot, for one side of one book.
//!
//! A radix tree with 64-way nodes over `PRICE_TICKS_BITS` bits: each node has a 64-bit
//! occupancy mask and 64 child slots, so `first`, `last`, `next_above` and `next_below`
//! are a handful of `trailing_zeros` / `leading_zeros` steps, and the tree's depth is
//! fixed (7 levels for 42 bits). Nodes come from a pool with a free list, so once the
//! pool has grown to its working size, inserting and removing prices never allocates —
//! unlike `BTreeMap`, which allocates and frees nodes as levels come and go. Lives inside
//! a `Book`, on the shard core.

use crate::limits::PRICE_TICKS_BITS;
use crate::types::NIL;

const FANOUT_BITS: u32 = 6;
const DEPTH: usize = PRICE_TICKS_BITS.div_ceil(FANOUT_BITS) as usize;
const ROOT: u32 = 0;

const _: () = assert!(DEPTH as u32 * FANOUT_BITS >= PRICE_TICKS_BITS);
const _: () = assert!(DEPTH == 7);

#[derive(Clone)]
struct Node {
    mask: u64,
    /// Child node index, or (in a leaf node) the stored value.
    slots: [u32; 64],
}

impl Node {
    const EMPTY: Node = Node { mask: 0, slots: [NIL; 64] };
}

#[derive(Clone)]
pub(crate) struct PriceIndex {
    nodes: Vec<Node>,
    free_head: u32,
    len: usize,
}

#[inline]
fn digit(key: u64, depth: usize) -> u32 {
    let shift = FANOUT_BITS * (DEPTH - 1 - depth) as u32;
    ((key >> shift) & 63) as u32
}

impl PriceIndex {
    pub(crate) fn new() -> PriceIndex {
        PriceIndex { nodes: vec![Node::EMPTY], free_head: NIL, len: 0 }
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }

    fn alloc(&mut self) -> u32 {
        if self.free_head != NIL {
            let index = self.free_head;
            self.free_head = self.nodes[index as usize].slots[0];
            self.nodes[index as usize] = Node::EMPTY;
            return index;
        }
        self.nodes.push(Node::EMPTY);
        (self.nodes.len() - 1) as u32
    }

    fn release(&mut self, index: u32) {
        debug_assert!(index != ROOT);
        debug_assert!(self.nodes[index as usize].mask == 0);
        self.nodes[index as usize].slots[0] = self.free_head;
        self.free_head = index;
    }

    pub(crate) fn get(&self, key: u64) -> Option<u32> {
        debug_assert!(key < 1 << PRICE_TICKS_BITS);
        let mut node = ROOT;
        for depth in 0..DEPTH {
            let d = digit(key, depth);
            let n = &self.nodes[node as usize];
            if n.mask & (1 << d) == 0 {
                return None;
            }
            node = n.slots[d as usize];
        }
        Some(node)
    }

    /// Inserts a key that is not present.
    pub(crate) fn insert(&mut self, key: u64, value: u32) {
        assert!(key < 1 << PRICE_TICKS_BITS, "price key out of range");
        assert!(value != NIL);
        let mut node = ROOT;
        for depth in 0..DEPTH - 1 {
            let d = digit(key, depth);
            if self.nodes[node as usize].mask & (1 << d) == 0 {
                let child = self.alloc();
                let n = &mut self.nodes[node as usize];
                n.mask |= 1 << d;
                n.slots[d as usize] = child;
            }
            node = self.nodes[node as usize].slots[d as usize];
        }
        let d = digit(key, DEPTH - 1);
        let leaf = &mut self.nodes[node as usize];
        assert!(leaf.mask & (1 << d) == 0, "price key already present");
        leaf.mask |= 1 << d;
        leaf.slots[d as usize] = value;
        self.len += 1;
    }

    /// Removes a key that is present, freeing nodes that become empty.
    pub(crate) fn remove(&mut self, key: u64) -> u32 {
        let mut path = [ROOT; DEPTH];
        let mut node = ROOT;
        for (depth, step) in path.iter_mut().enumerate().take(DEPTH - 1) {
            *step = node;
            let d = digit(key, depth);
            let n = &self.nodes[node as usize];
            assert!(n.mask & (1 << d) != 0, "price key not present");
            node = n.slots[d as usize];
        }
        path[DEPTH - 1] = node;
        let d = digit(key, DEPTH - 1);
        let leaf = &mut self.nodes[node as usize];
        assert!(leaf.mask & (1 << d) != 0, "price key not present");
        let value = leaf.slots[d as usize];
        leaf.mask &= !(1 << d);
        leaf.slots[d as usize] = NIL;
        self.len -= 1;
        // Free empty nodes bottom-up; the root is never freed.
        let mut depth = DEPTH - 1;
        while depth > 0 && self.nodes[path[depth] as usize].mask == 0 {
            self.release(path[depth]);
            let parent = &mut self.nodes[path[depth - 1] as usize];
            let pd = digit(key, depth - 1);
            parent.mask &= !(1 << pd);
            parent.slots[pd as usize] = NIL;
            depth -= 1;
        }
        value
    }

    /// Smallest key, with its value.
    pub(crate) fn first(&self) -> Option<(u64, u32)> {
        self.descend(ROOT, 0, 0, false)
    }

    /// Largest key, with its value.
    pub(crate) fn last(&self) -> Option<(u64, u32)> {
        self.descend(ROOT, 0, 0, true)
    }

    /// From `node` at `depth` (with the key bits above it in `prefix`), follows the lowest
    /// (or highest) set bit down to a leaf.
    fn descend(
        &self,
        mut node: u32,
        depth: usize,
        mut prefix: u64,
        high: bool,
    ) -> Option<(u64, u32)> {
        for _ in depth..DEPTH {
            let n = &self.nodes[node as usize];
            if n.mask == 0 {
                return None;
            }
            let d = if high { 63 - n.mask.leading_zeros() } else { n.mask.trailing_zeros() };
            prefix = (prefix << FANOUT_BITS) | d as u64;
            node = n.slots[d as usize];
        }
        Some((prefix, node))
    }

    /// Smallest key strictly greater than `key`.
    pub(crate) fn next_above(&self, key: u64) -> Option<(u64, u32)> {
        self.neighbour(key, false)
    }

    /// Largest key strictly smaller than `key`.
    pub(crate) fn next_below(&self, key: u64) -> Option<(u64, u32)> {
        self.neighbour(key, true)
    }

    fn neighbour(&self, key: u64, below: bool) -> Option<(u64, u32)> {
        debug_assert!(key < 1 << PRICE_TICKS_BITS);
        // Walk down along `key`, remembering the path; then, from the deepest level up,
        // look for a sibling on the wanted side and descend from it.
        let mut path = [NIL; DEPTH];
        let mut node = ROOT;
        let mut depth_reached = 0;
        for (depth, step) in path.iter_mut().enumerate() {
            *step = node;
            depth_reached = depth;
            if depth == DEPTH - 1 {
                break;
            }
            let d = digit(key, depth);
            let n = &self.nodes[node as usize];
            if n.mask & (1 << d) == 0 {
                break;
            }
            node = n.slots[d as usize];
        }
        for depth in (0..=depth_reached).rev() {
            let n = &self.nodes[path[depth] as usize];
            let d = digit(key, depth);
            let candidates = if below {
                n.mask & ((1u64 << d) - 1)
            } else if d == 63 {
                0
            } else {
                n.mask & !((2u64 << d) - 1)
            };
            if candidates == 0 {
                continue;
            }
            let c =
                if below { 63 - candidates.leading_zeros() } else { candidates.trailing_zeros() };
            let prefix = (key >> (FANOUT_BITS * (DEPTH - depth) as u32)) << FANOUT_BITS | c as u64;
            if depth == DEPTH - 1 {
                return Some((prefix, n.slots[c as usize]));
            }
            return self.descend(n.slots[c as usize], depth + 1, prefix, below);
        }
        None
    }

    /// Nodes held by the pool (for memory accounting and tests).
    #[cfg(test)]
    fn nodes_live(&self) -> usize {
        let mut free = 0;
        let mut at = self.free_head;
        while at != NIL {
            free += 1;
            at = self.nodes[at as usize].slots[0];
        }
        self.nodes.len() - free
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[test]
    fn basic_order() {
        let mut index = PriceIndex::new();
        assert_eq!(index.first(), None);
        for (i, key) in [5u64, 1, 900, 64, 63, (1 << 42) - 1, 0].iter().enumerate() {
            index.insert(*key, i as u32);
        }
        assert_eq!(index.first(), Some((0, 6)));
        assert_eq!(index.last(), Some(((1 << 42) - 1, 5)));
        assert_eq!(index.next_above(5), Some((63, 4)));
        assert_eq!(index.next_above(63), Some((64, 3)));
        assert_eq!(index.next_below(64), Some((63, 4)));
        assert_eq!(index.next_below(0), None);
        assert_eq!(index.next_above((1 << 42) - 1), None);
        assert_eq!(index.remove(64), 3);
        assert_eq!(index.next_above(63), Some((900, 2)));
        assert_eq!(index.get(900), Some(2));
        assert_eq!(index.get(901), None);
    }

    proptest! {
        #[test]
        fn matches_btreemap(ops in proptest::collection::vec((0u8..3, 0u64..5000, any::<bool>()), 1..400)) {
            let mut index = PriceIndex::new();
            let mut model = BTreeMap::new();
            for (i, (op, raw, wide)) in ops.into_iter().enumerate() {
                // Mix dense keys with keys spread over the whole range.
                let key = if wide { raw.wrapping_mul(879_609_302_221) % (1 << 42) } else { raw };
                match op {
                    0 if !model.contains_key(&key) => {
                        index.insert(key, i as u32);
                        model.insert(key, i as u32);
                    }
                    1 if model.contains_key(&key) => {
                        prop_assert_eq!(index.remove(key), model.remove(&key).unwrap());
                    }
                    _ => {}
                }
                prop_assert_eq!(index.len(), model.len());
                prop_assert_eq!(index.get(key), model.get(&key).copied());
                prop_assert_eq!(index.first(), model.iter().next().map(|(k, v)| (*k, *v)));
                prop_assert_eq!(index.last(), model.iter().next_back().map(|(k, v)| (*k, *v)));
                prop_assert_eq!(index.next_above(key), model.range(key + 1..).next().map(|(k, v)| (*k, *v)));
                prop_assert_eq!(index.next_below(key), model.range(..key).next_back().map(|(k, v)| (*k, *v)));
            }
            for key in model.keys().copied().collect::<Vec<_>>() {
                index.remove(key);
            }
            prop_assert_eq!(index.nodes_live(), 1);
        }
    }
}
