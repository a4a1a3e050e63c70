//! A growable array kept as fixed-size chunks, for merger indexes that
//! reach tens of megabytes. One contiguous `Vec` of that size is a single
//! allocation above glibc's mmap threshold (at most 32 MiB): every time the
//! index grew past it, the whole array was copied into fresh pages from
//! the kernel, and freeing it handed them back, so each run faulted them
//! in again. Chunks stay below the threshold, are reused from the heap
//! like any small allocation, and growing never copies earlier entries.

/// Entries per chunk: a few hundred kilobytes for the largest entry types.
const CHUNK: usize = 1024;

pub(crate) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn get(&self, i: usize) -> Option<&T> {
        self.chunks.get(i / CHUNK)?.get(i % CHUNK)
    }

    pub(crate) fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.chunks.get_mut(i / CHUNK)?.get_mut(i % CHUNK)
    }

    pub(crate) fn push(&mut self, x: T) {
        match self.chunks.last_mut() {
            Some(c) if c.len() < CHUNK => c.push(x),
            _ => {
                let mut c = Vec::with_capacity(CHUNK);
                c.push(x);
                self.chunks.push(c);
            }
        }
        self.len += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_across_chunk_boundaries() {
        let mut c = Chunked::default();
        let n = 3 * CHUNK + 5;
        for i in 0..n {
            c.push(i);
        }
        assert_eq!(c.len(), n);
        for i in [0, CHUNK - 1, CHUNK, 2 * CHUNK + 7, n - 1] {
            assert_eq!(c.get(i), Some(&i));
        }
        assert_eq!(c.get(n), None);
        if let Some(x) = c.get_mut(CHUNK) {
            *x = 7;
        }
        assert_eq!(c.get(CHUNK), Some(&7));
    }
}
