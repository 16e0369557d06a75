//! Protobuf wire format, read in place and written by hand, for [`super::transcode`].
//!
//! Reading borrows from the input (no `String` per field). Anything the fast path does not
//! decide exactly like prost (any wire error, groups, a field prost would merge) is a
//! [`Stop::Fallback`]: the whole message then goes through prost, which decides it.
//! Writing produces exactly prost's bytes for our proto3-style fields: defaults left out,
//! `optional` fields written when present, minimal varints, fields in tag order (the caller's job).

use prost::encoding::WireType;

/// Why the fast path stopped on an entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// Leave the whole message to prost (its error, or its merge of repeated fields).
    Fallback,
    /// The entity breaks a GTFS-realtime rule; prost and `validate` name it.
    Invalid,
}

pub(super) type Step<T = ()> = Result<T, Stop>;

/// One field's value, borrowed from the message.
#[derive(Debug, Clone, Copy)]
pub(super) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl<'a> Value<'a> {
    #[inline]
    pub fn u64(self) -> Step<u64> {
        match self {
            Value::Varint(v) => Ok(v),
            _ => Err(Stop::Fallback),
        }
    }

    /// prost's `uint32` and `int32`/enum decodes truncate the varint.
    #[inline]
    pub fn u32(self) -> Step<u32> {
        self.u64().map(|v| v as u32)
    }

    #[inline]
    pub fn i32(self) -> Step<i32> {
        self.u64().map(|v| v as i32)
    }

    #[inline]
    pub fn i64(self) -> Step<i64> {
        self.u64().map(|v| v as i64)
    }

    #[inline]
    pub fn bool(self) -> Step<bool> {
        self.u64().map(|v| v != 0)
    }

    #[inline]
    pub fn f32(self) -> Step<f32> {
        match self {
            Value::Fixed32(v) => Ok(f32::from_bits(v)),
            _ => Err(Stop::Fallback),
        }
    }

    #[inline]
    pub fn f64(self) -> Step<f64> {
        match self {
            Value::Fixed64(v) => Ok(f64::from_bits(v)),
            _ => Err(Stop::Fallback),
        }
    }

    #[inline]
    pub fn message(self) -> Step<&'a [u8]> {
        match self {
            Value::Bytes(b) => Ok(b),
            _ => Err(Stop::Fallback),
        }
    }

    /// A string field's bytes, checked as prost checks them: prost refuses a string that
    /// is not UTF-8. Kept as bytes (no `str` needed to copy them out), so the common ASCII
    /// case is checked inline and the full check runs only on the rest.
    #[inline]
    pub fn text(self) -> Step<&'a [u8]> {
        let b = self.message()?;
        if b.is_ascii() || std::str::from_utf8(b).is_ok() {
            Ok(b)
        } else {
            Err(Stop::Fallback)
        }
    }
}

/// The fields of one message, in wire order.
pub(super) fn fields(buf: &[u8]) -> Fields<'_> {
    Fields { buf }
}

pub(super) struct Fields<'a> {
    buf: &'a [u8],
}

impl<'a> Fields<'a> {
    // Inlined into every message's field loop: the field's value never goes through memory
    // (a third less time for the whole direct path).
    #[inline(always)]
    fn read(&mut self) -> Step<(u32, Value<'a>)> {
        // prost's `decode_key`: a key above u32::MAX, wire type 6 or 7, or tag 0 is an error.
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| Stop::Fallback)?;
        if tag == 0 || key > u64::from(u32::MAX) {
            return Err(Stop::Fallback);
        }
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.array()?)),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| Stop::Fallback)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.array()?)),
            // Groups (3, 4) are deprecated and absent from GTFS-realtime; prost's skipping of
            // them has a depth limit that depends on where they sit, so prost decides. 6 and 7
            // are no wire type.
            _ => return Err(Stop::Fallback),
        };
        Ok((tag, value))
    }

    #[inline]
    fn varint(&mut self) -> Step<u64> {
        match self.buf.first() {
            Some(&b) if b < 0x80 => {
                self.buf = &self.buf[1..];
                Ok(u64::from(b))
            }
            _ => self.long_varint(),
        }
    }

    /// A varint as prost reads one: at most ten bytes, the tenth at most 1.
    fn long_varint(&mut self) -> Step<u64> {
        let mut value = 0u64;
        for (i, &b) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    break;
                }
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(Stop::Fallback)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Step<[u8; N]> {
        self.take(N)?.try_into().map_err(|_| Stop::Fallback)
    }

    #[inline]
    fn take(&mut self, n: usize) -> Step<&'a [u8]> {
        if n > self.buf.len() {
            return Err(Stop::Fallback);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Step<(u32, Value<'a>)>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let item = self.read();
        if item.is_err() {
            self.buf = &[];
        }
        Some(item)
    }
}

/// Sets a singular message field; a second occurrence is one prost would merge.
pub(super) fn once<'a>(slot: &mut Option<&'a [u8]>, value: Value<'a>) -> Step {
    if slot.replace(value.message()?).is_some() {
        return Err(Stop::Fallback);
    }
    Ok(())
}

/// Appends our fields to an update body.
pub(super) struct Writer<'o> {
    pub out: &'o mut Vec<u8>,
}

/// A varint as prost writes one (minimal): its bytes and how many.
fn varint_bytes(mut v: u64) -> ([u8; 10], usize) {
    let mut bytes = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        bytes[n] = v as u8 | 0x80;
        v >>= 7;
        n += 1;
    }
    bytes[n] = v as u8;
    (bytes, n + 1)
}

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    if v >= 0x80 {
        out.reserve(10);
        while v >= 0x80 {
            out.push(v as u8 | 0x80);
            v >>= 7;
        }
    }
    out.push(v as u8);
}

#[inline]
fn put_key(out: &mut Vec<u8>, tag: u32, wire_type: WireType) {
    put_varint(out, u64::from(tag << 3 | wire_type as u32));
}

impl Writer<'_> {
    /// A proto3 `string`: left out when empty.
    #[inline]
    pub fn str(&mut self, tag: u32, s: &str) {
        self.text(tag, s.as_bytes());
    }

    /// A proto3 `string` from bytes checked as UTF-8: left out when empty.
    #[inline]
    pub fn text(&mut self, tag: u32, s: &[u8]) {
        if !s.is_empty() {
            self.bytes(tag, s);
        }
    }

    /// A length-delimited field, written even when empty (`repeated string` elements).
    #[inline]
    pub fn bytes(&mut self, tag: u32, b: &[u8]) {
        put_key(self.out, tag, WireType::LengthDelimited);
        put_varint(self.out, b.len() as u64);
        self.out.extend_from_slice(b);
    }

    #[inline]
    pub fn varint(&mut self, tag: u32, v: u64) {
        put_key(self.out, tag, WireType::Varint);
        put_varint(self.out, v);
    }

    /// A proto3 `uint64`: left out when 0.
    #[inline]
    pub fn u64(&mut self, tag: u32, v: u64) {
        if v != 0 {
            self.varint(tag, v);
        }
    }

    /// A proto3 `int32`/enum: left out when 0; negative values take ten bytes, as in prost.
    #[inline]
    pub fn i32(&mut self, tag: u32, v: i32) {
        if v != 0 {
            self.varint(tag, v as i64 as u64);
        }
    }

    #[inline]
    pub fn opt_u32(&mut self, tag: u32, v: Option<u32>) {
        if let Some(v) = v {
            self.varint(tag, u64::from(v));
        }
    }

    #[inline]
    pub fn opt_u64(&mut self, tag: u32, v: Option<u64>) {
        if let Some(v) = v {
            self.varint(tag, v);
        }
    }

    #[inline]
    pub fn opt_i32(&mut self, tag: u32, v: Option<i32>) {
        if let Some(v) = v {
            self.varint(tag, v as i64 as u64);
        }
    }

    #[inline]
    pub fn opt_i64(&mut self, tag: u32, v: Option<i64>) {
        if let Some(v) = v {
            self.varint(tag, v as u64);
        }
    }

    #[inline]
    pub fn bool(&mut self, tag: u32, v: bool) {
        if v {
            self.varint(tag, 1);
        }
    }

    /// A proto3 `double`: left out when it equals 0 (so -0.0 too, as prost does).
    #[inline]
    pub fn f64(&mut self, tag: u32, v: f64) {
        if v != 0.0 {
            self.opt_f64(tag, Some(v));
        }
    }

    #[inline]
    pub fn opt_f64(&mut self, tag: u32, v: Option<f64>) {
        if let Some(v) = v {
            put_key(self.out, tag, WireType::SixtyFourBit);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    #[inline]
    pub fn opt_f32(&mut self, tag: u32, v: Option<f32>) {
        if let Some(v) = v {
            put_key(self.out, tag, WireType::ThirtyTwoBit);
            self.out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A message field written by `body`. Its length is not known before, so one byte is
    /// set aside for it and the body moved up if it needs more (bodies of 128 bytes or more).
    pub fn message<T>(&mut self, tag: u32, body: impl FnOnce(&mut Writer<'_>) -> T) -> T {
        put_key(self.out, tag, WireType::LengthDelimited);
        let at = self.out.len();
        self.out.push(0);
        let result = body(&mut Writer { out: self.out });
        let len = self.out.len() - at - 1;
        if len < 0x80 {
            self.out[at] = len as u8;
        } else {
            let (prefix, n) = varint_bytes(len as u64);
            self.out.splice(at..at + 1, prefix[..n].iter().copied());
        }
        result
    }
}
