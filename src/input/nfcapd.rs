//! nfdump 1.7 files (`nfcapd.*`, LAYOUT_VERSION_2), read from the layout in
//! nfdump's nffileV2.h and nfxV3.h: a 40-byte file header, then data blocks
//! (a 12-byte header and a payload compressed with the file's codec) holding
//! exporter, sampler and flow records. Blocks are read one at a time and each
//! is bounded ([`MAX_BLOCK`]), so a lying or hostile file costs bounded
//! memory and ends in an error naming the offset.

mod codec;
mod lzo;
mod records;

use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub use codec::{Compression, MAX_BLOCK};

use super::stream::{collect, read_full};
use super::InputError;
use crate::record::{Record, Time};
use records::Exporters;

const HEADER_LEN: usize = 40;
const BLOCK_HEADER_LEN: usize = 12;
const LAYOUT_VERSION_1: u16 = 1;
const LAYOUT_VERSION_2: u16 = 2;
/// Block types that carry records; others (nfdump-internal) are skipped.
const DATA_BLOCK_TYPES: [u16; 2] = [2, 3];

/// Read a whole nfcapd file into records (`rec_id` = index in the file).
pub fn read(path: &Path) -> Result<Vec<Record>, InputError> {
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    collect(|emit| stream(path, BufReader::new(file), emit))
}

/// The first and last flow time (ms) the file's statistics record states,
/// read from the appendix without reading the flows: lets a run skip files
/// outside `--from`/`--to`. `None` when the file has no statistics record.
pub fn stored_time_range(path: &Path) -> Result<Option<(Time, Time)>, InputError> {
    let file = std::fs::File::open(path).map_err(|source| InputError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = Reader::new(path, BufReader::new(file))?;
    reader.seek_appendix()?;
    reader.read_appendix()?;
    Ok(reader.time_range)
}

/// Decode an nfcapd file already in memory; `path` only labels errors.
pub fn parse(path: &Path, data: &[u8]) -> Result<Vec<Record>, InputError> {
    collect(|emit| stream(path, data, emit))
}

/// Decode an nfcapd file block by block (`rec_id` = index in the file).
pub fn stream<R: Read>(path: &Path, r: R, emit: &mut dyn FnMut(Record)) -> Result<(), InputError> {
    let mut reader = Reader::new(path, r)?;
    let mut next_id = 0u64;
    while let Some(block) = reader.next_block()? {
        for mut rec in block {
            rec.set_rec_id(next_id);
            next_id += 1;
            emit(rec);
        }
    }
    Ok(())
}

/// What the reader needs from the file header.
#[derive(Debug, Clone, Copy)]
pub struct FileHeader {
    pub compression: Compression,
    /// Data blocks in the file (the appendix follows them).
    pub blocks: u32,
    /// Blocks of the appendix (ident and statistics) and where they start.
    pub appendix_blocks: u16,
    pub appendix_offset: u64,
}

type Fail = (usize, String);

impl FileHeader {
    fn parse(h: &[u8]) -> Result<FileHeader, Fail> {
        match [h[0], h[1]] {
            [0x0C, 0xA5] => {}
            [0xA5, 0x0C] => {
                return Err((
                    0,
                    "big-endian nfdump file: only little-endian files are supported".into(),
                ))
            }
            m => {
                return Err((
                    0,
                    format!(
                        "not an nfdump file (magic {:02X} {:02X}, expected 0C A5)",
                        m[0], m[1]
                    ),
                ))
            }
        }
        match u16::from_le_bytes([h[2], h[3]]) {
            LAYOUT_VERSION_2 => {}
            LAYOUT_VERSION_1 => {
                return Err((
                    2,
                    "nfdump 1.6 file layout (LAYOUT_VERSION_1) is not supported; \
                     convert it with nfdump 1.7 (`nfdump -r OLD -w NEW`)"
                        .into(),
                ))
            }
            v => {
                return Err((
                    2,
                    format!(
                        "unknown nfdump file layout version {v} (only version 2, nfdump 1.7, is supported)"
                    ),
                ))
            }
        }
        if h.len() < HEADER_LEN {
            return Err((
                h.len(),
                format!(
                    "file ends inside the {HEADER_LEN}-byte nfdump file header ({} bytes)",
                    h.len()
                ),
            ));
        }
        let compression = Compression::from_byte(h[16]).ok_or_else(|| {
            (
                16,
                format!("unknown block compression {} (expected 0-4)", h[16]),
            )
        })?;
        if h[17] != 0 {
            return Err((
                17,
                format!(
                    "encrypted nfdump file (encryption {}) is not supported",
                    h[17]
                ),
            ));
        }
        let mut off = [0u8; 8];
        off.copy_from_slice(&h[24..32]);
        let appendix_offset = u64::try_from(i64::from_le_bytes(off))
            .map_err(|_| (24, "negative appendix offset".to_string()))?;
        Ok(FileHeader {
            compression,
            blocks: u32::from_le_bytes([h[36], h[37], h[38], h[39]]),
            appendix_blocks: u16::from_le_bytes([h[18], h[19]]),
            appendix_offset,
        })
    }
}

/// A block as stored: where it is, its header fields, its payload.
struct RawBlock {
    /// File offset of the block header.
    at: u64,
    /// Index among the file's blocks (appendix blocks continue the count).
    index: u64,
    records: u32,
    kind: u16,
    payload: Vec<u8>,
}

impl RawBlock {
    fn payload_offset(&self) -> u64 {
        self.at + BLOCK_HEADER_LEN as u64
    }
}

/// Reads an nfcapd file block by block.
pub struct Reader<R> {
    path: PathBuf,
    inner: R,
    /// File offset of the next unread byte.
    offset: u64,
    header: FileHeader,
    blocks_read: u64,
    done: bool,
    exporters: Exporters,
    /// Decompression buffer reused across blocks.
    scratch: Vec<u8>,
    /// From the appendix's statistics record, once it is read.
    time_range: Option<(Time, Time)>,
}

impl<R: Read> Reader<R> {
    /// Read and check the file header.
    pub fn new(path: &Path, mut inner: R) -> Result<Reader<R>, InputError> {
        let mut h = [0u8; HEADER_LEN];
        let got = read_full(&mut inner, &mut h)
            .map_err(|e| malformed(path, 0, format!("cannot read the file header: {e}")))?;
        if got < 4 {
            return Err(malformed(
                path,
                got as u64,
                format!("file ends inside the {HEADER_LEN}-byte nfdump file header ({got} bytes)"),
            ));
        }
        let header = FileHeader::parse(&h[..got]).map_err(|(o, r)| malformed(path, o as u64, r))?;
        Ok(Reader {
            path: path.to_path_buf(),
            inner,
            offset: HEADER_LEN as u64,
            header,
            blocks_read: 0,
            done: false,
            exporters: Exporters::default(),
            scratch: Vec::new(),
            time_range: None,
        })
    }

    pub fn header(&self) -> FileHeader {
        self.header
    }

    /// First and last flow time from the statistics record; known once
    /// [`Reader::next_block`] has returned `None`.
    pub fn time_range(&self) -> Option<(Time, Time)> {
        self.time_range
    }

    /// The flows of the next data block (possibly none), or `None` after
    /// the last block the header announces and the appendix. Their
    /// `rec_id`s are 0: the caller numbers records across blocks.
    pub fn next_block(&mut self) -> Result<Option<Vec<Record>>, InputError> {
        if self.done {
            return Ok(None);
        }
        if self.blocks_read >= u64::from(self.header.blocks) {
            self.read_appendix()?;
            self.done = true;
            return Ok(None);
        }
        let block = self.read_block()?;
        if !DATA_BLOCK_TYPES.contains(&block.kind) {
            return Ok(Some(Vec::new()));
        }
        let data = self.expand(&block)?;
        let mut flows = Vec::new();
        records::decode_block(&data, block.records, &mut self.exporters, &mut flows).map_err(
            |(o, r)| {
                let n = block.index;
                // Uncompressed, the position is a file offset; otherwise
                // name the block and the position in its expanded bytes.
                match self.header.compression {
                    Compression::None => {
                        self.err(block.payload_offset() + o as u64, format!("block {n}: {r}"))
                    }
                    c => self.err(
                        block.at,
                        format!("block {n} ({} expanded, at byte {o}): {r}", c.name()),
                    ),
                }
            },
        )?;
        Ok(Some(flows))
    }

    fn expand(&mut self, block: &RawBlock) -> Result<Vec<u8>, InputError> {
        let max = MAX_BLOCK - BLOCK_HEADER_LEN;
        codec::decompress(
            self.header.compression,
            &block.payload,
            max,
            &mut self.scratch,
        )
        .map_err(|r| self.err(block.at, format!("block {}: {r}", block.index)))
    }

    /// The appendix (ident, statistics) follows the data blocks; reading it
    /// through, expanded and bounded like any block, tells a complete file
    /// from one cut at a block boundary.
    fn read_appendix(&mut self) -> Result<(), InputError> {
        let FileHeader {
            appendix_blocks,
            appendix_offset,
            ..
        } = self.header;
        if appendix_blocks == 0 {
            return Ok(());
        }
        if appendix_offset != self.offset {
            return Err(self.err(
                24,
                format!(
                    "the appendix is said to start at offset {appendix_offset}, \
                     but the data blocks end at {}",
                    self.offset
                ),
            ));
        }
        for _ in 0..appendix_blocks {
            let block = self.read_block()?;
            let data = self.expand(&block)?;
            if let Some(range) = records::stat_range(&data, block.records) {
                self.time_range = Some(range);
            }
        }
        Ok(())
    }

    /// Read one block header and its payload, checking the size first.
    fn read_block(&mut self) -> Result<RawBlock, InputError> {
        let at = self.offset;
        let n = self.blocks_read;
        let total = u64::from(self.header.blocks) + u64::from(self.header.appendix_blocks);
        let mut bh = [0u8; BLOCK_HEADER_LEN];
        let got = read_full(&mut self.inner, &mut bh)
            .map_err(|e| self.err(at, format!("block {n}: {e}")))?;
        if got < BLOCK_HEADER_LEN {
            return Err(self.err(
                at + got as u64,
                format!(
                    "file ends after {n} of the {total} blocks (data and appendix) its header announces"
                ),
            ));
        }
        let records = u32::from_le_bytes([bh[0], bh[1], bh[2], bh[3]]);
        let size = u32::from_le_bytes([bh[4], bh[5], bh[6], bh[7]]) as usize;
        let kind = u16::from_le_bytes([bh[8], bh[9]]);
        let limit = MAX_BLOCK - BLOCK_HEADER_LEN;
        if size == 0 || size > limit {
            return Err(self.err(
                at + 4,
                format!("block {n} says it holds {size} bytes (a block holds 1 to {limit} bytes)"),
            ));
        }
        let mut payload = vec![0u8; size];
        let got = read_full(&mut self.inner, &mut payload)
            .map_err(|e| self.err(at, format!("block {n}: {e}")))?;
        let start = at + BLOCK_HEADER_LEN as u64;
        if got < size {
            return Err(self.err(
                start + got as u64,
                format!(
                    "file ends inside block {n}: its header says {size} bytes, only {got} follow"
                ),
            ));
        }
        self.offset = start + size as u64;
        self.blocks_read += 1;
        Ok(RawBlock {
            at,
            index: n,
            records,
            kind,
            payload,
        })
    }

    fn err(&self, offset: u64, reason: String) -> InputError {
        malformed(&self.path, offset, reason)
    }
}

impl<R: Read + Seek> Reader<R> {
    /// Skip the data blocks: jump to where the header says the appendix is.
    fn seek_appendix(&mut self) -> Result<(), InputError> {
        let at = self.header.appendix_offset;
        self.inner
            .seek(SeekFrom::Start(at))
            .map_err(|e| self.err(24, format!("cannot seek to the appendix at {at}: {e}")))?;
        self.offset = at;
        self.blocks_read = u64::from(self.header.blocks);
        Ok(())
    }
}

fn malformed(path: &Path, offset: u64, reason: String) -> InputError {
    InputError::Malformed {
        path: path.to_path_buf(),
        offset,
        reason,
    }
}
