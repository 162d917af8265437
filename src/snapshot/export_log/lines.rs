//! Streaming line reader over plain and gzip export files.
//!
//! Memory stays bounded by one line: a file is never read whole, and a line
//! longer than [`MAX_LINE_BYTES`] (a file without newlines, say) is skipped
//! without being buffered.
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};

use flate2::read::MultiGzDecoder;

/// Longer than any event Tetragon writes (its argument buffers are far smaller),
/// short enough that a corrupt file cannot make the agent allocate without bound.
pub const MAX_LINE_BYTES: usize = 8 * 1024 * 1024;

/// Large reads keep syscalls and gzip refills off the profile.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// One line as read, without its `\n` (or `\r\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line<'a> {
    /// Ended by a newline.
    Complete(&'a [u8]),
    /// The last line of the file with no newline: possibly cut by a writer that
    /// is still writing, or by a crash.
    Unterminated(&'a [u8]),
    /// Longer than the limit; its bytes were discarded.
    TooLong { len: u64 },
}

/// Reads lines one at a time, reusing one buffer.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    max_line: usize,
    line_no: u64,
    bytes: u64,
}

/// A reader over either kind of export file.
pub type FileLines = LineReader<Box<dyn BufRead + Send>>;

/// Wraps an open export file; `compressed` files are gunzipped on the fly
/// (multi-member aware, as `gzip` may concatenate members).
pub fn file_lines(file: File, compressed: bool) -> FileLines {
    let inner: Box<dyn BufRead + Send> = if compressed {
        let gz = MultiGzDecoder::new(BufReader::with_capacity(READ_BUFFER_BYTES, file));
        Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, gz))
    } else {
        Box::new(BufReader::with_capacity(READ_BUFFER_BYTES, file))
    };
    LineReader::new(inner, MAX_LINE_BYTES)
}

impl<R: BufRead> LineReader<R> {
    pub fn new(inner: R, max_line: usize) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(4096),
            max_line,
            line_no: 0,
            bytes: 0,
        }
    }

    /// 1-based number of the line last returned.
    pub fn line_no(&self) -> u64 {
        self.line_no
    }

    /// Bytes consumed so far (decompressed), newlines included.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The next line, `Ok(None)` at end of input. An `Err` (an I/O error, or a
    /// corrupt gzip stream) ends this file; lines already returned stay valid.
    pub fn next_line(&mut self) -> io::Result<Option<Line<'_>>> {
        self.buf.clear();
        let limit = u64::try_from(self.max_line)
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let n = (&mut self.inner)
            .take(limit)
            .read_until(b'\n', &mut self.buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.line_no += 1;
        self.bytes += n as u64;
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
            return Ok(Some(Line::Complete(&self.buf)));
        }
        if self.buf.len() > self.max_line {
            let rest = self.inner.skip_until(b'\n')? as u64;
            self.bytes += rest;
            return Ok(Some(Line::TooLong {
                len: n as u64 + rest,
            }));
        }
        Ok(Some(Line::Unterminated(&self.buf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(input: &[u8], max: usize) -> Vec<String> {
        let mut r = LineReader::new(input, max);
        let mut out = Vec::new();
        while let Some(line) = r.next_line().expect("in-memory read") {
            out.push(match line {
                Line::Complete(b) => format!("C:{}", String::from_utf8_lossy(b)),
                Line::Unterminated(b) => format!("U:{}", String::from_utf8_lossy(b)),
                Line::TooLong { len } => format!("L:{len}"),
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_flags_the_unterminated_tail() {
        assert_eq!(
            collect(b"a\nbb\r\n\ncut", 100),
            ["C:a", "C:bb", "C:", "U:cut"]
        );
        assert!(collect(b"", 100).is_empty());
    }

    #[test]
    fn skips_overlong_lines_without_buffering_them() {
        assert_eq!(
            collect(b"12345\n1234567890\nok\n123456789", 5),
            ["C:12345", "L:11", "C:ok", "L:9"]
        );
    }

    #[test]
    fn counts_bytes_and_lines() {
        let mut r = LineReader::new(&b"ab\ncd\n"[..], 10);
        while r.next_line().expect("read").is_some() {}
        assert_eq!((r.line_no(), r.bytes()), (2, 6));
    }
}
