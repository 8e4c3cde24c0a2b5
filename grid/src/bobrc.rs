//! `~/.config/bobrc.toml`: the settings file bob's `bob config` edits
//! (`sge.project` among them), read and written here too.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use crate::Error;

/// The variable that names another settings file (as bob's `BOBRC`).
pub const ENV: &str = "BOBRC";

/// The settings file: its path and contents. Edits keep the file's comments
/// and order; saving replaces the file atomically.
#[derive(Debug, Clone)]
pub struct Rc {
    path: PathBuf,
    doc: DocumentMut,
}

impl Rc {
    /// Where the file is: `$BOBRC`, else `$XDG_CONFIG_HOME/bobrc.toml`, else
    /// `~/.config/bobrc.toml`.
    pub fn default_path() -> PathBuf {
        if let Some(p) = std::env::var_os(ENV).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
            .unwrap_or_else(|| PathBuf::from(".config"));
        config.join("bobrc.toml")
    }

    /// The file at [`default_path`](Self::default_path); empty if it does not exist.
    ///
    /// # Errors
    /// When it exists but cannot be read, or is not TOML.
    pub fn load() -> Result<Self, Error> {
        Self::open(&Self::default_path())
    }

    /// The file at `path`; empty if it does not exist.
    ///
    /// # Errors
    /// When it exists but cannot be read, or is not TOML.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(Error::Io {
                    what: format!("reading the settings file {}", path.display()),
                    source: e,
                });
            }
        };
        let doc = text.parse().map_err(|e| Error::Rc {
            path: path.to_owned(),
            reason: format!("it is not valid TOML ({e}); fix or remove it"),
        })?;
        Ok(Rc {
            path: path.to_owned(),
            doc,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value of a dotted key (`sge.project`): a string as it is, other
    /// values as TOML. Finds `[sge] project = …` and a quoted `"sge.project" = …`.
    pub fn get(&self, key: &str) -> Option<String> {
        let item = self
            .doc
            .get(key)
            .or_else(|| lookup(self.doc.as_table(), key))?;
        Some(match item.as_value() {
            Some(Value::String(s)) => s.value().clone(),
            Some(v) => v.to_string().trim().to_owned(),
            None => item.to_string().trim().to_owned(),
        })
    }

    /// Sets a dotted key to a string, in nested tables (`[sge] project = "…"`),
    /// as bob writes it.
    ///
    /// # Errors
    /// When a part of the key is not a word, or a prefix holds a value
    /// rather than a table.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), Error> {
        let parts = split(key, &self.path)?;
        let (last, tables) = parts.split_last().expect("split gives at least one part");
        let mut table = self.doc.as_table_mut();
        for (i, part) in tables.iter().enumerate() {
            let entry = table.entry(part).or_insert_with(|| {
                let mut t = Table::new();
                t.set_implicit(true);
                Item::Table(t)
            });
            table = entry.as_table_mut().ok_or_else(|| Error::Rc {
                path: self.path.clone(),
                reason: format!(
                    "`{}` holds a value, not a table; `{key}` cannot go under it",
                    tables[..=i].join(".")
                ),
            })?;
        }
        table.insert(last, toml_edit::value(value));
        Ok(())
    }

    /// Removes a dotted key; says whether it was there.
    pub fn unset(&mut self, key: &str) -> bool {
        if self.doc.remove(key).is_some() {
            return true;
        }
        let Some((parent, last)) = key.rsplit_once('.') else {
            return false;
        };
        let mut table = self.doc.as_table_mut();
        for part in parent.split('.') {
            match table.get_mut(part).and_then(Item::as_table_mut) {
                Some(t) => table = t,
                None => return false,
            }
        }
        table.remove(last).is_some()
    }

    /// Every key and value, one `key = value` per line, dotted.
    pub fn show(&self) -> String {
        let mut out = String::new();
        flatten(self.doc.as_table(), "", &mut out);
        out
    }

    /// Writes the file (its folder is created), atomically.
    ///
    /// # Errors
    /// When it cannot be written.
    pub fn save(&self) -> Result<(), Error> {
        let io = |what: &str, e| Error::Io {
            what: format!("{what} {}", self.path.display()),
            source: e,
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the folder of", e))?;
        }
        let tmp = self
            .path
            .with_extension(format!("toml.tmp-{}", std::process::id()));
        std::fs::write(&tmp, self.doc.to_string()).map_err(|e| io("writing", e))?;
        std::fs::rename(&tmp, &self.path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io("replacing", e)
        })
    }
}

fn lookup<'d>(table: &'d Table, key: &str) -> Option<&'d Item> {
    let mut parts = key.split('.');
    let mut item = table.get(parts.next()?)?;
    for part in parts {
        item = item.get(part)?;
    }
    Some(item)
}

fn split(key: &str, path: &Path) -> Result<Vec<String>, Error> {
    let parts: Vec<String> = key.split('.').map(str::to_owned).collect();
    if parts.iter().any(|p| {
        p.is_empty()
            || !p
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    }) {
        return Err(Error::Rc {
            path: path.to_owned(),
            reason: format!(
                "`{key}` is not a key such as `sge.project` (words of letters, digits, `_` \
                 and `-`, joined by dots)"
            ),
        });
    }
    Ok(parts)
}

fn flatten(table: &Table, prefix: &str, out: &mut String) {
    for (k, item) in table.iter() {
        let key = if prefix.is_empty() {
            k.to_owned()
        } else {
            format!("{prefix}.{k}")
        };
        match item {
            Item::Table(t) => flatten(t, &key, out),
            Item::Value(Value::InlineTable(t)) => {
                flatten(&t.clone().into_table(), &key, out);
            }
            Item::Value(v) => {
                out.push_str(&format!("{key} = {}\n", v.to_string().trim()));
            }
            Item::ArrayOfTables(a) => {
                for (i, t) in a.iter().enumerate() {
                    flatten(t, &format!("{key}[{i}]"), out);
                }
            }
            Item::None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bobrc-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir.join("sub/bobrc.toml")
    }

    #[test]
    fn set_get_show_unset_keep_comments_and_other_keys() {
        let path = temp("edit");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(
            &path,
            "# my settings\nbob.db.atnt.directory = \"/data/atnt\"\n\n[sge]\nqueue = \"q_1day\"\n",
        )
        .unwrap();
        let mut rc = Rc::open(&path).unwrap();
        assert_eq!(
            rc.get("bob.db.atnt.directory").as_deref(),
            Some("/data/atnt")
        );
        assert_eq!(rc.get("sge.project"), None);
        rc.set("sge.project", "biometrics").unwrap();
        rc.set("temp", "/tmp/x").unwrap();
        rc.save().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("# my settings\n"), "{text}");
        assert!(
            text.contains("[sge]\nqueue = \"q_1day\"\nproject = \"biometrics\"\n"),
            "{text}"
        );
        let rc = Rc::open(&path).unwrap();
        assert_eq!(rc.get("sge.project").as_deref(), Some("biometrics"));
        assert_eq!(
            rc.show(),
            "bob.db.atnt.directory = \"/data/atnt\"\ntemp = \"/tmp/x\"\nsge.queue = \"q_1day\"\nsge.project = \"biometrics\"\n"
        );
        let mut rc = rc;
        assert!(rc.unset("sge.project") && !rc.unset("sge.project"));
        assert_eq!(rc.get("sge.project"), None);
        assert_eq!(rc.get("sge.queue").as_deref(), Some("q_1day"));
    }

    #[test]
    fn a_missing_file_is_empty_and_a_broken_one_is_named() {
        let path = temp("missing");
        let mut rc = Rc::open(&path).unwrap();
        assert_eq!(rc.show(), "");
        rc.set("sge.project", "p").unwrap();
        rc.save().unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "[sge]\nproject = \"p\"\n"
        );

        std::fs::write(&path, "[sge\nproject = 1").unwrap();
        let e = Rc::open(&path).unwrap_err().to_string();
        assert!(
            e.contains(&path.display().to_string()) && e.contains("TOML"),
            "{e}"
        );
        let mut rc = Rc::open(&temp("keys")).unwrap();
        assert!(rc.set("sge..project", "x").is_err());
        rc.set("a", "1").unwrap();
        let e = rc.set("a.b", "2").unwrap_err().to_string();
        assert!(e.contains("`a` holds a value"), "{e}");
    }
}
