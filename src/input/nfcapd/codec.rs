//! Block decompression for the five codecs nfdump writes, each bounded: a
//! block never expands past [`MAX_BLOCK`], so a decompression bomb costs at
//! most that much memory.

use std::io::Read;

use super::lzo;

/// nfdump's own buffer is 5 MB (BUFFSIZE) and its writers fill at most 2 MB
/// per block; a block that expands past this is not one nfdump wrote.
pub const MAX_BLOCK: usize = 5 * 1024 * 1024;

/// The file header's compression byte (nffileV2.h).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lzo,
    Bz2,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn from_byte(b: u8) -> Option<Compression> {
        Some(match b {
            0 => Compression::None,
            1 => Compression::Lzo,
            2 => Compression::Bz2,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "uncompressed",
            Compression::Lzo => "LZO",
            Compression::Bz2 => "BZ2",
            Compression::Lz4 => "LZ4",
            Compression::Zstd => "ZSTD",
        }
    }
}

/// Expand one block's payload into at most `max` bytes. `scratch` is kept
/// by the caller across blocks: LZ4 needs an output buffer of the full
/// bound, and zeroing 5 MB per block would cost more than decoding it.
pub fn decompress(
    c: Compression,
    data: &[u8],
    max: usize,
    scratch: &mut Vec<u8>,
) -> Result<Vec<u8>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{} block does not decompress: {e}", c.name());
    let too_large = || {
        format!(
            "{} block decompresses to more than {max} bytes (the bound for one block)",
            c.name()
        )
    };
    match c {
        Compression::None => Ok(data.to_vec()),
        Compression::Lzo => lzo::decompress(data, max).map_err(|e| match e {
            lzo::LzoError::TooLarge(_) => too_large(),
            e => fail(&e),
        }),
        Compression::Lz4 => {
            if scratch.len() < max {
                scratch.resize(max, 0);
            }
            match lz4_flex::block::decompress_into(data, &mut scratch[..max]) {
                Ok(n) => Ok(scratch[..n].to_vec()),
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => Err(too_large()),
                Err(e) => Err(fail(&e)),
            }
        }
        Compression::Bz2 => bounded_read(bzip2::read::BzDecoder::new(data), max, too_large, fail),
        Compression::Zstd => {
            let mut dec = zstd::stream::read::Decoder::with_buffer(data).map_err(|e| fail(&e))?;
            // The window is decoder memory the frame asks for; nfdump's
            // blocks fit in 8 MB, a frame asking for more is refused.
            dec.window_log_max(23).map_err(|e| fail(&e))?;
            bounded_read(dec, max, too_large, fail)
        }
    }
}

/// Read a streaming decoder to its end, refusing output past `max`.
fn bounded_read(
    dec: impl Read,
    max: usize,
    too_large: impl Fn() -> String,
    fail: impl Fn(&dyn std::fmt::Display) -> String,
) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    dec.take(limit)
        .read_to_end(&mut out)
        .map_err(|e| fail(&e))?;
    if out.len() > max {
        return Err(too_large());
    }
    Ok(out)
}
