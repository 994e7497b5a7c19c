//! Reading a large JSON List without holding it: the file is read in chunks, a byte scanner
//! cuts the `items` array into its elements, and batches of elements are decoded by worker
//! threads, each into a part of the snapshot; the parts are joined in file order, so the
//! snapshot is the one a sequential read gives. Memory is a few batches, not the file.

use super::{LoadError, Snapshot, load_item};
use crate::field::FieldError;
use std::io::Read;
use std::sync::{Arc, Mutex, mpsc};

/// Bytes read per call.
const CHUNK: usize = 1 << 20;
/// Bytes of items handed to a worker at once.
const BATCH: usize = 1 << 20;

/// Consecutive items, as bytes, and where each starts and ends.
#[derive(Default)]
struct Batch {
    number: usize,
    first_index: usize,
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

/// What the scanner found of the document.
pub(super) enum Found {
    /// The document had an `items` array: its elements are decoded.
    List(Box<Snapshot>),
    /// No `items`: the whole document, for the reader of single objects.
    Other(Vec<u8>),
}

/// Where the scanner is in the JSON text.
#[derive(Default)]
struct Scanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The last string read at the top level (a key, when a `:` follows).
    top_string: Vec<u8>,
    /// The top-level key just read is `items`.
    items_key: bool,
    /// Inside the `items` array.
    in_items: bool,
    seen_items: bool,
    /// An item is being read (its bytes go to the batch).
    in_item: bool,
    items: usize,
    /// The first element of `items` that is not an object: reported once the whole text
    /// was found well-formed (a truncated file is said to be one first).
    refused: Option<LoadError>,
}

/// Reads `reader` (whose first bytes, already read, are `start`) as a JSON document.
pub(super) fn read_list(start: Vec<u8>, reader: impl Read) -> Result<Found, LoadError> {
    read_list_in(start, reader, CHUNK, BATCH)
}

fn read_list_in(
    start: Vec<u8>,
    mut reader: impl Read,
    chunk: usize,
    batch: usize,
) -> Result<Found, LoadError> {
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4);
    let (to_workers, batches) = mpsc::sync_channel::<Batch>(workers * 2);
    let batches = Arc::new(Mutex::new(batches));
    let (to_main, parts) = mpsc::channel::<(usize, Result<Snapshot, LoadError>)>();
    // Batch buffers come back to the scanner to be filled again: fresh memory for every
    // batch would cost more in page faults than the decoding.
    let (give_back, returned) = mpsc::channel::<Vec<u8>>();
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let batches = batches.clone();
            let to_main = to_main.clone();
            let give_back = give_back.clone();
            scope.spawn(move || {
                loop {
                    let batch = batches.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(mut batch) = batch else { return };
                    let number = batch.number;
                    let _ = to_main.send((number, decode(&batch)));
                    batch.bytes.clear();
                    let _ = give_back.send(batch.bytes);
                }
            });
        }
        drop(to_main);
        drop(give_back);
        let buffers = || returned.try_recv().unwrap_or_default();
        let scanned = scan(start, &mut reader, (chunk, batch), buffers, |batch| {
            // A worker that stopped early has already sent its error.
            let _ = to_workers.send(batch);
        });
        drop(to_workers);
        let mut received: Vec<(usize, Result<Snapshot, LoadError>)> = parts.iter().collect();
        let (outer, seen_items) = scanned?;
        if !seen_items {
            return Ok(Found::Other(outer));
        }
        received.sort_by_key(|(number, _)| *number);
        // The first bad item in file order is the one reported, as a sequential read would.
        let mut snapshot = Snapshot::default();
        for (_, part) in received {
            snapshot.append(part?);
        }
        Ok(Found::List(Box::new(snapshot)))
    })
}

/// Decodes a batch's items into a part of the snapshot.
fn decode(batch: &Batch) -> Result<Snapshot, LoadError> {
    let mut part = Snapshot::default();
    let mut start = 0;
    for (i, &end) in batch.ends.iter().enumerate() {
        let index = batch.first_index + i;
        let text = std::str::from_utf8(&batch.bytes[start..end]).map_err(|e| LoadError::Item {
            index,
            kind: "?".into(),
            name: "?".into(),
            problem: FieldError::new("<item>", format!("not UTF-8 text: {e}")),
        })?;
        load_item(&mut part, index, text)?;
        start = end;
    }
    Ok(part)
}

/// Scans the document, handing full batches of items to `send`; returns the bytes outside
/// `items` and whether there was an `items` array.
fn scan(
    start: Vec<u8>,
    reader: &mut impl Read,
    (chunk_size, batch_size): (usize, usize),
    buffers: impl Fn() -> Vec<u8>,
    mut send: impl FnMut(Batch),
) -> Result<(Vec<u8>, bool), LoadError> {
    let mut s = Scanner::default();
    let mut outer = Vec::new();
    let mut batch = Batch::default();
    let mut chunk = start;
    let mut batches = 0;
    loop {
        if chunk.is_empty() {
            chunk.resize(chunk_size, 0);
            let n = read_some(reader, &mut chunk)?;
            chunk.truncate(n);
            if n == 0 {
                break;
            }
        }
        s.feed(&chunk, &mut outer, &mut batch)?;
        chunk.clear();
        if batch.bytes.len() >= batch_size {
            let next = Batch {
                number: batches + 1,
                first_index: s.items,
                bytes: buffers(),
                ends: Vec::new(),
            };
            let mut full = std::mem::replace(&mut batch, next);
            // An item cut by the chunk's end moves to the next batch.
            if s.in_item {
                let cut = full.ends.last().copied().unwrap_or(0);
                batch.bytes.extend_from_slice(&full.bytes[cut..]);
                full.bytes.truncate(cut);
            }
            batches += 1;
            send(full);
        }
    }
    if s.depth != 0 || s.in_string {
        return Err(LoadError::Syntax(
            "the document ends early (a truncated file?): an object or array is not closed".into(),
        ));
    }
    if let Some(refused) = s.refused {
        return Err(refused);
    }
    if !batch.ends.is_empty() {
        send(batch);
    }
    Ok((outer, s.seen_items))
}

/// One `read` call, retried when interrupted.
pub(super) fn read_some(reader: &mut impl Read, buf: &mut [u8]) -> Result<usize, LoadError> {
    loop {
        match reader.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(LoadError::Syntax(format!("reading: {e}"))),
        }
    }
}

impl Scanner {
    /// Scans `bytes`: the bytes of items go to `batch` (each item's end recorded), the rest
    /// to `outer`.
    fn feed(
        &mut self,
        bytes: &[u8],
        outer: &mut Vec<u8>,
        batch: &mut Batch,
    ) -> Result<(), LoadError> {
        let mut from = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    i += 1;
                    continue;
                }
                // Most of the text is strings: jump to the next quote or backslash.
                let Some(at) = memchr::memchr2(b'"', b'\\', &bytes[i..]) else {
                    if self.depth == 1 {
                        self.top_string.extend_from_slice(&bytes[i..]);
                    }
                    i = bytes.len();
                    continue;
                };
                if self.depth == 1 {
                    self.top_string.extend_from_slice(&bytes[i..i + at]);
                }
                i += at;
                if bytes[i] == b'\\' {
                    self.escaped = true;
                } else {
                    self.in_string = false;
                }
                i += 1;
                continue;
            }
            match b {
                b'"' => {
                    if self.in_items && self.depth == 2 {
                        self.refuse();
                    }
                    self.in_string = true;
                    if self.depth == 1 {
                        self.top_string.clear();
                    }
                }
                b':' if self.depth == 1 => self.items_key = self.top_string == b"items",
                b',' if self.depth == 1 => self.items_key = false,
                b'[' if self.depth == 1 && self.items_key => {
                    self.depth += 1;
                    self.in_items = true;
                    self.seen_items = true;
                    // `outer` keeps the `[`; items are not part of it.
                    outer.extend_from_slice(&bytes[from..=i]);
                    from = i + 1;
                    i += 1;
                    continue;
                }
                b'{' | b'[' => {
                    if self.in_items && self.depth == 2 {
                        if b == b'[' {
                            self.refuse();
                        } else {
                            self.in_item = true;
                            from = i;
                        }
                    }
                    self.depth += 1;
                }
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.in_item && self.depth == 2 {
                        self.in_item = false;
                        batch.bytes.extend_from_slice(&bytes[from..=i]);
                        batch.ends.push(batch.bytes.len());
                        self.items += 1;
                        from = i + 1;
                    } else if self.in_items && self.depth == 1 {
                        // The end of `items`.
                        self.in_items = false;
                        self.items_key = false;
                        from = i;
                    }
                }
                b' ' | b'\n' | b'\r' | b'\t' | b',' => {}
                _ if self.in_items && self.depth == 2 => self.refuse(),
                _ => {}
            }
            i += 1;
        }
        if self.in_item {
            batch.bytes.extend_from_slice(&bytes[from..]);
        } else if !self.in_items {
            outer.extend_from_slice(&bytes[from..]);
        }
        Ok(())
    }

    fn refuse(&mut self) {
        self.refused.get_or_insert(LoadError::Item {
            index: self.items,
            kind: "?".into(),
            name: "?".into(),
            problem: FieldError::new("<item>", "expected an object (a Kubernetes resource)"),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads `text` in chunks of `chunk` bytes and batches of `batch`.
    fn read(text: &str, chunk: usize, batch: usize) -> Result<Found, LoadError> {
        read_list_in(Vec::new(), text.as_bytes(), chunk, batch)
    }

    fn list(text: &str, chunk: usize, batch: usize) -> Snapshot {
        match read(text, chunk, batch) {
            Ok(Found::List(s)) => *s,
            Ok(Found::Other(_)) => panic!("no items found"),
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn items_cut_anywhere_by_chunks_and_batches_read_as_one_sequential_read() {
        let demo = serde_json::to_string_pretty(&crate::demo::demo_cluster()).unwrap();
        let whole = format!("{:?}", super::super::load_json(&demo).unwrap());
        for (chunk, batch) in [(1, 1), (7, 50), (4096, 1000), (CHUNK, BATCH)] {
            let mut streamed = list(&demo, chunk, batch);
            super::super::finish(&mut streamed);
            assert_eq!(
                format!("{streamed:?}"),
                whole,
                "chunk {chunk}, batch {batch}"
            );
        }
    }

    #[test]
    fn keys_and_values_named_items_elsewhere_are_not_the_list() {
        let text = r#"{"kind": "items", "metadata": {"items": [1]}, "x": "items", "items": [
            {"kind": "Namespace", "metadata": {"name": "a \"items\": ["}}], "tail": {"items": []}}"#;
        let s = list(text, 3, 10);
        assert_eq!(s.namespaces.len(), 1);
        assert_eq!(s.namespaces[0].name, "a \"items\": [");
    }

    #[test]
    fn a_document_without_items_is_handed_back_whole() {
        let text = r#"{"kind": "Node", "metadata": {"name": "a"}}"#;
        match read(text, 5, 5) {
            Ok(Found::Other(bytes)) => assert_eq!(bytes, text.as_bytes()),
            _ => panic!("expected the document back"),
        }
    }

    #[test]
    fn the_first_bad_item_in_file_order_is_the_one_reported() {
        let ns = |i: usize| format!(r#"{{"kind": "Namespace", "metadata": {{"name": "n{i}"}}}}"#);
        let mut items: Vec<String> = (0..40).map(ns).collect();
        items[13] = r#"{"kind": "PersistentVolume", "metadata": {"name": "pv"}, "spec": {"capacity": {"storage": "lots"}}}"#.into();
        items[31] = r#"{"kind": "Pod", "metadata": {"name": "p"}, "spec": 7}"#.into();
        let text = format!(r#"{{"items": [{}]}}"#, items.join(","));
        let Err(e) = read(&text, 16, 64) else {
            panic!("bad items accepted")
        };
        assert!(
            e.to_string()
                .starts_with("items[13] (PersistentVolume pv): spec.capacity.storage"),
            "{e}"
        );
    }

    #[test]
    fn a_truncated_file_and_items_that_are_not_objects_are_refused() {
        let cut = r#"{"items": [{"kind": "Namespace", "metadata": {"name": "a"#;
        assert!(matches!(read(cut, 8, 8), Err(LoadError::Syntax(m)) if m.contains("ends early")));
        for text in [
            r#"{"items": [{"kind": "Namespace"}, 3]}"#,
            r#"{"items": ["x"]}"#,
        ] {
            let Err(e) = read(text, 4, 4) else {
                panic!("accepted {text}")
            };
            assert!(e.to_string().contains("expected an object"), "{e}");
        }
    }
}
