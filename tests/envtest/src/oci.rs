//! Reads the OCI image archives of `scripts/build-images.py` (an OCI image layout in a tar):
//! the image config and every layer's entries, enough for tests to compare an image with the
//! Dockerfile stage it stands for.

use std::collections::BTreeMap;
use std::path::Path;

/// One entry of a tar: its path (no leading `/`), mode, owner and content.
#[derive(Debug, Clone)]
pub struct Entry {
    pub path: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// `b'0'` file, `b'5'` directory, `b'2'` symlink, ...
    pub kind: u8,
    pub data: Vec<u8>,
}

fn octal(field: &[u8]) -> u64 {
    let text = String::from_utf8_lossy(field);
    u64::from_str_radix(text.trim_matches(|c: char| c == '\0' || c == ' '), 8).unwrap_or(0)
}

fn cstr(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// The entries of an uncompressed tar (ustar, with PAX `path` records for long names).
pub fn tar_entries(bytes: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut long_path: Option<String> = None;
    while at + 512 <= bytes.len() {
        let header = &bytes[at..at + 512];
        if header.iter().all(|&b| b == 0) {
            break;
        }
        let size = octal(&header[124..136]) as usize;
        let kind = header[156];
        let start = at + 512;
        let end = start + size;
        if end > bytes.len() {
            return Err(format!("a truncated tar entry at byte {at}"));
        }
        let data = &bytes[start..end];
        at = start + size.div_ceil(512) * 512;
        if kind == b'x' {
            // PAX records: "<len> key=value\n".
            for record in String::from_utf8_lossy(data).split('\n') {
                if let Some((_, kv)) = record.split_once(' ')
                    && let Some(path) = kv.strip_prefix("path=")
                {
                    long_path = Some(path.to_string());
                }
            }
            continue;
        }
        let prefix = cstr(&header[345..500]);
        let name = cstr(&header[0..100]);
        let path = long_path.take().unwrap_or_else(|| {
            if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            }
        });
        out.push(Entry {
            path: path
                .trim_start_matches("./")
                .trim_start_matches('/')
                .to_string(),
            mode: octal(&header[100..108]) as u32,
            uid: octal(&header[108..116]) as u32,
            gid: octal(&header[116..124]) as u32,
            kind,
            data: data.to_vec(),
        });
    }
    Ok(out)
}

/// An image read from its archive: the config JSON and its layers' entries.
#[derive(Debug)]
pub struct ImageArchive {
    pub config: serde_json::Value,
    pub config_digest: String,
    pub layers: Vec<Vec<Entry>>,
}

impl ImageArchive {
    /// Reads `path` (one image: `index.json` -> manifest -> config and layers).
    pub fn read(path: &Path) -> Result<ImageArchive, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let files: BTreeMap<String, Vec<u8>> = tar_entries(&bytes)?
            .into_iter()
            .map(|e| (e.path, e.data))
            .collect();
        let blob = |digest: &str| -> Result<&Vec<u8>, String> {
            let hex = digest.trim_start_matches("sha256:");
            files
                .get(&format!("blobs/sha256/{hex}"))
                .ok_or_else(|| format!("no blob {digest} in {}", path.display()))
        };
        let json = |bytes: &[u8]| -> Result<serde_json::Value, String> {
            serde_json::from_slice(bytes).map_err(|e| format!("{}: {e}", path.display()))
        };
        let index = json(files.get("index.json").ok_or("no index.json")?)?;
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .ok_or("index.json names no manifest")?;
        let manifest = json(blob(manifest_digest)?)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .ok_or("the manifest names no config")?
            .to_string();
        let config = json(blob(&config_digest)?)?;
        let mut layers = Vec::new();
        for layer in manifest["layers"].as_array().ok_or("no layers")? {
            let digest = layer["digest"].as_str().ok_or("a layer without digest")?;
            layers.push(tar_entries(blob(digest)?)?);
        }
        Ok(ImageArchive {
            config,
            config_digest,
            layers,
        })
    }

    /// The entry at `path` in the image's filesystem (the last layer holding it).
    pub fn file(&self, path: &str) -> Option<&Entry> {
        let path = path.trim_start_matches('/');
        self.layers
            .iter()
            .rev()
            .find_map(|l| l.iter().find(|e| e.path.trim_end_matches('/') == path))
    }
}
