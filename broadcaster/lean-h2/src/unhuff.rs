//! Rewrites a request header block's Huffman-coded strings as raw ones before `loona-hpack`
//! decodes it: loona builds a new Huffman decoder (two nested hash maps of 257 codes) for
//! every Huffman string, which was most of a unary call's server CPU. Here one decoder per
//! thread is built once and reused. Anything unexpected (a truncated block, a bad code)
//! leaves the block as it is, so loona still reports the error exactly as before.

use std::cell::RefCell;

use loona_hpack::huffman::HuffmanDecoder;

use crate::headers::put_int;

thread_local! {
    static HUFFMAN: RefCell<HuffmanDecoder> = RefCell::new(HuffmanDecoder::new());
}

/// `block` with every Huffman string raw, or `None` when it has none or does not parse
/// (decode the block as it is then). At most 8/5 of the block's size: a code is 5 bits or
/// more.
pub(crate) fn raw_strings(block: &[u8]) -> Option<Vec<u8>> {
    if !has_huffman(block)? {
        return None;
    }
    let mut out = Vec::with_capacity(block.len() * 8 / 5 + 8);
    HUFFMAN.with(|huffman| rewrite(block, &mut out, &mut huffman.borrow_mut()))?;
    Some(out)
}

/// Walks the representations (RFC 7541 section 6), calling `string` on each string literal
/// and copying everything else.
fn walk(
    block: &[u8],
    mut copy: impl FnMut(&[u8]),
    mut string: impl FnMut(&[u8]) -> Option<()>,
) -> Option<()> {
    let mut at = 0;
    while at < block.len() {
        let first = block[at];
        let (prefix, strings_follow) = match first {
            b if b & 0x80 != 0 => (7, false),
            b if b & 0xc0 == 0x40 => (6, true),
            b if b & 0xe0 == 0x20 => (5, false),
            _ => (4, true),
        };
        let (index, used) = int(&block[at..], prefix)?;
        copy(&block[at..at + used]);
        at += used;
        if !strings_follow {
            continue;
        }
        let count = if index == 0 { 2 } else { 1 };
        for _ in 0..count {
            let (len, used) = int(block.get(at..)?, 7)?;
            let end = (at + used).checked_add(len)?;
            string(block.get(at..end)?)?;
            at = end;
        }
    }
    Some(())
}

fn has_huffman(block: &[u8]) -> Option<bool> {
    let mut found = false;
    walk(
        block,
        |_| {},
        |s| {
            found |= s[0] & 0x80 != 0;
            Some(())
        },
    )?;
    Some(found)
}

fn rewrite(block: &[u8], out: &mut Vec<u8>, huffman: &mut HuffmanDecoder) -> Option<()> {
    // `walk` hands both closures the output; a cell keeps the borrow checker out of it.
    let out = RefCell::new(out);
    walk(
        block,
        |bytes| out.borrow_mut().extend_from_slice(bytes),
        |s| {
            let (len, used) = int(s, 7)?;
            let body = &s[used..used + len];
            let mut out = out.borrow_mut();
            if s[0] & 0x80 == 0 {
                out.extend_from_slice(s);
            } else {
                let raw = huffman.decode(body).ok()?;
                put_int(&mut out, 0x00, 7, raw.len());
                out.extend_from_slice(&raw);
            }
            Some(())
        },
    )
}

/// An integer with an N-bit prefix (RFC 7541 section 5.1) and the bytes it took; `None` when
/// truncated or over `u32`.
fn int(buf: &[u8], prefix_bits: u32) -> Option<(usize, usize)> {
    let max = (1usize << prefix_bits) - 1;
    let mut value = (*buf.first()? as usize) & max;
    if value < max {
        return Some((value, 1));
    }
    let mut shift = 0;
    for (i, &b) in buf.iter().enumerate().skip(1) {
        value = value.checked_add(((b & 0x7f) as usize).checked_shl(shift)?)?;
        if value > u32::MAX as usize {
            return None;
        }
        if b & 0x80 == 0 {
            return Some((value, i + 1));
        }
        shift += 7;
    }
    None
}

#[cfg(test)]
mod tests;
