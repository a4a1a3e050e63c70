//! Hash maps for the engine's hot paths. The standard SipHash dominated
//! the grouper and merger key lookups; foldhash is several times faster
//! and still seeded per process, so crafted keys cannot be precomputed.

use std::collections::{HashMap, HashSet};

pub(crate) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
pub(crate) type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
