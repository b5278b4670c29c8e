//! zstd compression, applied before encryption.

use std::cell::RefCell;
use std::io::Read;

use eventsmith_core::{CompressError, Compressor};

thread_local! {
    // zstd contexts hold megabytes of tables: creating one per payload cost more than the
    // compression itself, so each thread keeps one of each.
    static COMPRESSOR: RefCell<Option<(i32, zstd::bulk::Compressor<'static>)>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { RefCell::new(None) };
}

/// zstd compression of payloads, skipped for small payloads where it does not pay.
#[derive(Debug, Clone)]
pub struct Zstd {
    level: i32,
    min_size: usize,
    max_decompressed: usize,
}

impl Default for Zstd {
    fn default() -> Self {
        Zstd {
            level: 3,
            min_size: 256,
            max_decompressed: 64 * 1024 * 1024,
        }
    }
}

impl Zstd {
    /// Level 3, payloads of 256 bytes or more, at most 64 MiB decompressed.
    pub fn new() -> Self {
        Self::default()
    }

    /// The compression level (1 fastest to 22 smallest; zstd clamps out-of-range levels).
    pub fn level(mut self, level: i32) -> Self {
        self.level = level;
        self
    }

    /// Payloads shorter than this are stored uncompressed.
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// A frame that decompresses to more than this is refused (a decompression bomb). Payloads
    /// longer than this are stored uncompressed, so that everything written can be read back.
    pub fn max_decompressed(mut self, bytes: usize) -> Self {
        self.max_decompressed = bytes;
        self
    }
}

impl Compressor for Zstd {
    fn compress(&self, bytes: &[u8]) -> Result<Option<Vec<u8>>, CompressError> {
        // A payload the decompressor would refuse is stored as it is: what is written must load
        // (the mapper's own size limit applies to uncompressed payloads).
        if bytes.len() < self.min_size || bytes.len() > self.max_decompressed {
            return Ok(None);
        }
        let compressed = COMPRESSOR.with(|cell| {
            let mut cell = cell.borrow_mut();
            if cell.as_ref().is_none_or(|(level, _)| *level != self.level) {
                *cell = Some((self.level, zstd::bulk::Compressor::new(self.level)?));
            }
            let (_, compressor) = cell.as_mut().expect("set above");
            compressor.compress(bytes)
        });
        let compressed = compressed.map_err(|e| CompressError::Failed(Box::new(e)))?;
        // Incompressible data (already compressed, random) is stored as it is.
        Ok((compressed.len() < bytes.len()).then_some(compressed))
    }

    fn decompress(&self, bytes: &[u8]) -> Result<Vec<u8>, CompressError> {
        // Frames written by `compress` state their size: check it, then decompress in one go.
        if let Ok(Some(size)) = zstd::zstd_safe::get_frame_content_size(bytes) {
            if size > self.max_decompressed as u64 {
                return Err(CompressError::TooLarge {
                    limit: self.max_decompressed,
                });
            }
            let out = DECOMPRESSOR.with(|cell| {
                let mut cell = cell.borrow_mut();
                if cell.is_none() {
                    *cell = Some(zstd::bulk::Decompressor::new()?);
                }
                cell.as_mut()
                    .expect("set above")
                    .decompress(bytes, size as usize)
            });
            let out = out.map_err(|e| CompressError::Corrupt(Box::new(e)))?;
            if out.len() as u64 != size {
                return Err(CompressError::WrongLength {
                    announced: size,
                    found: out.len() as u64,
                });
            }
            return Ok(out);
        }
        // Frames without a stated size are streamed, never past the limit.
        // Creating the decoder only allocates its context: a failure is the compressor's own.
        let decoder = zstd::stream::read::Decoder::new(bytes)
            .map_err(|e| CompressError::Failed(Box::new(e)))?;
        let mut out = Vec::new();
        decoder
            .take(self.max_decompressed as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|e| CompressError::Corrupt(Box::new(e)))?;
        if out.len() > self.max_decompressed {
            return Err(CompressError::TooLarge {
                limit: self.max_decompressed,
            });
        }
        Ok(out)
    }
}
