//! Response headers and trailers (RFC 7541), with a dynamic table of our own: a field a
//! connection's responses repeat (`content-type: application/grpc`, `grpc-status: 0`) goes
//! out once as a literal with incremental indexing, then as a one-byte index. Fields that
//! vary per response (`grpc-message`, `date`) or are long stay literals without indexing, so
//! the table holds what pays. No Huffman. The table never exceeds the peer's
//! SETTINGS_HEADER_TABLE_SIZE (and 4 KiB); a change is announced at the next block's start.

use std::collections::VecDeque;

use http::HeaderMap;

use crate::headers::{is_connection_specific, put_int, put_str};

/// `:status 200` from the static table (index 8).
const STATUS_200: u8 = 0x88;
/// Static table indexes of names we write.
const STATUS_NAME_INDEX: usize = 8;
const CONTENT_TYPE_NAME_INDEX: usize = 31;
/// The first dynamic table index (RFC 7541 section 2.3.3).
const FIRST_DYNAMIC: usize = 62;
/// Our table's largest size, whatever the peer allows.
const MAX_TABLE: usize = 4096;
/// A field is indexed only when it fits this (name, value and the 32-byte entry overhead).
const MAX_INDEXED_ENTRY: usize = 128;
const _: () = assert!(MAX_TABLE <= u16::MAX as usize);

#[derive(Debug)]
pub(crate) struct Encoder {
    /// Newest first: entry `i` has index `FIRST_DYNAMIC + i`.
    entries: VecDeque<Entry>,
    /// Sizes in `u16` (the table never exceeds 4 KiB): the encoder sits in every
    /// connection, 40 bytes here where `usize`s took 64.
    size: u16,
    max: u16,
    /// A dynamic table size update owed at the start of the next block.
    update: Option<u16>,
}

/// A table entry: its name and value in one allocation, not two (an idle subscriber's
/// connection keeps one or two entries, and each allocation costs at least 32 bytes).
#[derive(Debug)]
struct Entry {
    /// The name, then the value.
    field: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Self {
        Self {
            field: [name, value].concat().into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn is(&self, name: &[u8], value: &[u8]) -> bool {
        self.field.split_at(self.name_len) == (name, value)
    }

    /// Its size as RFC 7541 section 4.1 counts it.
    fn size(&self) -> usize {
        self.field.len() + 32
    }
}

impl Default for Encoder {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            // SETTINGS_HEADER_TABLE_SIZE's initial value (RFC 9113 section 6.5.2).
            max: MAX_TABLE as u16,
            update: None,
        }
    }
}

impl Encoder {
    /// The peer's SETTINGS_HEADER_TABLE_SIZE: our table shrinks to it (never above 4 KiB),
    /// and the next block says so (RFC 7541 section 4.2).
    pub fn set_peer_table_size(&mut self, size: u32) {
        // At most MAX_TABLE, which fits (asserted above).
        self.max = size.min(MAX_TABLE as u32) as u16;
        self.evict_to(usize::from(self.max));
        self.update = Some(self.max);
    }

    /// A response's header block: `:status`, then `headers` (connection-specific ones left
    /// out).
    pub fn response(&mut self, status: u16, headers: &HeaderMap) -> Vec<u8> {
        let mut dst = self.begin();
        if status == 200 {
            dst.push(STATUS_200);
        } else {
            let value = status.to_string();
            self.field(
                &mut dst,
                b":status",
                value.as_bytes(),
                Some(STATUS_NAME_INDEX),
            );
        }
        self.put_fields(&mut dst, headers);
        dst
    }

    /// A block of regular fields (trailers).
    pub fn fields(&mut self, headers: &HeaderMap) -> Vec<u8> {
        let mut dst = self.begin();
        self.put_fields(&mut dst, headers);
        dst
    }

    fn begin(&mut self) -> Vec<u8> {
        let mut dst = Vec::new();
        if let Some(size) = self.update.take() {
            put_int(&mut dst, 0x20, 5, usize::from(size));
        }
        dst
    }

    fn put_fields(&mut self, dst: &mut Vec<u8>, headers: &HeaderMap) {
        for (name, value) in headers {
            if is_connection_specific(name, value.as_bytes()) {
                continue;
            }
            let static_name =
                (name == http::header::CONTENT_TYPE).then_some(CONTENT_TYPE_NAME_INDEX);
            self.field(dst, name.as_str().as_bytes(), value.as_bytes(), static_name);
        }
    }

    fn field(&mut self, dst: &mut Vec<u8>, name: &[u8], value: &[u8], static_name: Option<usize>) {
        if let Some(at) = self.entries.iter().position(|e| e.is(name, value)) {
            put_int(dst, 0x80, 7, FIRST_DYNAMIC + at);
            return;
        }
        let entry = name.len() + value.len() + 32;
        let indexed = entry <= MAX_INDEXED_ENTRY.min(usize::from(self.max)) && worth_indexing(name);
        // Literal with incremental indexing (6-bit name index) or without (4-bit).
        let (first, bits) = if indexed { (0x40, 6) } else { (0x00, 4) };
        match static_name {
            Some(index) => put_int(dst, first, bits, index),
            None => {
                dst.push(first);
                put_str(dst, name);
            }
        }
        put_str(dst, value);
        if indexed {
            self.evict_to(usize::from(self.max) - entry);
            if self.entries.capacity() == 0 {
                // A connection that answers one stream indexes one field: room for 4 (the
                // default first growth) would cost an idle subscriber 144 B more.
                self.entries.reserve_exact(1);
            }
            self.entries.push_front(Entry::new(name, value));
            // An indexed entry is at most MAX_INDEXED_ENTRY bytes.
            self.size += entry as u16;
        }
    }

    fn evict_to(&mut self, size: usize) {
        while usize::from(self.size) > size {
            let Some(evicted) = self.entries.pop_back() else {
                break;
            };
            self.size -= evicted.size() as u16;
        }
    }
}

/// Fields whose values differ from one response to the next are not worth a table entry.
fn worth_indexing(name: &[u8]) -> bool {
    !matches!(name, b"grpc-message" | b"date" | b"grpc-status-details-bin")
}

#[cfg(test)]
mod tests;
