//! `bazaar new NAME [--lang rust|python] [--dir DIR]`: scaffolds a service
//! that builds on its own, anywhere.
//!
//! The templates under `host/templates/`, the WIT and (for Rust) the SDK's
//! sources are compiled into the binary, so a scaffold needs nothing from
//! this repository. As a template is written, `{{name}}` becomes the
//! service name, `{{crate}}` its Cargo package name and `{{wasm}}` the
//! component's file name, and a trailing `.tmpl` is dropped (it keeps tools
//! from taking a template `Cargo.toml` for a real one).

use crate::config::is_valid_service_name;
use anyhow::{Context as _, bail};
use include_dir::{Dir, DirEntry, include_dir};
use std::path::{Path, PathBuf};

static RUST_TEMPLATE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates/rust");
static PYTHON_TEMPLATE: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/templates/python");
static WIT: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../wit");
static SDK_SOURCES: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/../components/sdk/src");

/// The SDK's `generate!` path to the WIT in this repository, and in a
/// scaffold, where the SDK copy sits next to `wit/`.
const SDK_WIT_PATH: &str = r#"path: "../../wit""#;
const SCAFFOLD_WIT_PATH: &str = r#"path: "../wit""#;

/// Package names Cargo refuses (keywords, the standard crates) or that
/// would clash with the scaffold's own dependencies, with `-` read as `_`.
const UNUSABLE_PACKAGE_NAMES: &str = "abstract alloc as async await bazaar_sdk become box break \
    const continue core crate do dyn else enum extern false final fn for gen if impl in let loop \
    macro match mod move mut override priv proc_macro pub ref return self serde serde_json static \
    std struct super test trait true try type typeof unsafe unsized use virtual where while \
    wit_bindgen yield";

/// What `bazaar new` prints once it has written a scaffold.
const NEXT_STEPS: &str = include_str!("../../templates/next-steps.txt");

/// The language of a new service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A cargo project using a copy of the Rust SDK.
    Rust,
    /// An app for componentize-py using the `bazaar` helper package.
    Python,
}

/// Arguments of `bazaar new`.
#[derive(Debug, clap::Args)]
pub struct NewArgs {
    /// The service's name (a-z, 0-9, `-`, `_`).
    pub name: String,
    /// The language.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    pub lang: Lang,
    /// The directory to create it in (absent or empty); default `./NAME`.
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// Writes the scaffold and prints what to do next; warns when the gateway
/// file at `config` already runs a service of that name (deploying the
/// scaffold under it would replace that service).
pub fn run(args: &NewArgs, config: &Path) -> anyhow::Result<()> {
    let project = Project::new(&args.name, args.lang)?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| PathBuf::from(&args.name));
    ensure_usable(&dir)?;
    write(&dir, &project.files()?)?;
    println!("{}", project.next_steps(&dir));
    let taken = config.exists()
        && crate::config::GatewayConfig::load(config)
            .is_ok_and(|gateway| gateway.services.contains_key(&args.name));
    if taken {
        eprintln!(
            "note: {} already has a service `{}`; deploying this scaffold under that name replaces it",
            config.display(),
            args.name
        );
    }
    Ok(())
}

/// The service being scaffolded and the names derived from its name.
struct Project {
    name: String,
    lang: Lang,
    /// The Cargo package name: the service name unless Cargo refuses it.
    package: String,
    /// The component's file name, as the build writes it.
    wasm: String,
}

/// One file of a scaffold, relative to its directory.
struct ScaffoldFile {
    path: PathBuf,
    contents: Vec<u8>,
}

impl Project {
    fn new(name: &str, lang: Lang) -> anyhow::Result<Self> {
        if !is_valid_service_name(name) {
            bail!(
                "`{name}` is not a valid service name: use 1-64 characters of a-z, 0-9, `-` or `_`"
            );
        }
        let package = package_name(name);
        let wasm = match lang {
            Lang::Rust => format!("{}.wasm", package.replace('-', "_")),
            Lang::Python => format!("{name}.wasm"),
        };
        Ok(Self {
            name: name.to_owned(),
            lang,
            package,
            wasm,
        })
    }

    /// Every file of the scaffold, templates rendered.
    fn files(&self) -> anyhow::Result<Vec<ScaffoldFile>> {
        let template = match self.lang {
            Lang::Rust => &RUST_TEMPLATE,
            Lang::Python => &PYTHON_TEMPLATE,
        };
        let mut files = Vec::new();
        for (path, contents) in walk(template) {
            let path = match path.to_str().and_then(|p| p.strip_suffix(".tmpl")) {
                Some(stripped) => PathBuf::from(stripped),
                None => path.to_owned(),
            };
            let contents = match std::str::from_utf8(contents) {
                Ok(text) => self.render(text).into_bytes(),
                Err(_) => contents.to_vec(),
            };
            files.push(ScaffoldFile { path, contents });
        }
        for (path, contents) in walk(&WIT) {
            files.push(ScaffoldFile {
                path: Path::new("wit").join(path),
                contents: contents.to_vec(),
            });
        }
        if self.lang == Lang::Rust {
            for (path, contents) in walk(&SDK_SOURCES) {
                let mut contents = contents.to_vec();
                if path == Path::new("lib.rs") {
                    contents = sdk_lib_for_scaffold(&contents)?;
                }
                let path = Path::new("bazaar-sdk/src").join(path);
                files.push(ScaffoldFile { path, contents });
            }
        }
        Ok(files)
    }

    fn render(&self, text: &str) -> String {
        render(
            text,
            &[
                ("name", &self.name),
                ("crate", &self.package),
                ("wasm", &self.wasm),
            ],
        )
    }

    /// What to run next, as `spin new` and `wash new` print it.
    fn next_steps(&self, dir: &Path) -> String {
        let shown = dir.display();
        let (lang, build, component) = match self.lang {
            Lang::Rust => (
                "Rust",
                format!(
                    "(cd {shown} && cargo test && cargo build --release --target wasm32-wasip2)"
                ),
                dir.join("target/wasm32-wasip2/release").join(&self.wasm),
            ),
            Lang::Python => (
                "Python",
                format!(
                    "pip install componentize-py==0.25.1\n     \
                     (cd {shown} && ./build.sh)   # the unit tests, then componentize-py ... -o {}",
                    self.wasm
                ),
                dir.join(&self.wasm),
            ),
        };
        let (dir, component) = (shown.to_string(), component.display().to_string());
        let vars = [
            ("lang", lang),
            ("name", &self.name),
            ("dir", &dir),
            ("build", &build),
            ("component", &component),
        ];
        render(NEXT_STEPS, &vars).trim_end().to_owned()
    }
}

/// `text` with each `{{key}}` of `vars` replaced by its value.
fn render(text: &str, vars: &[(&str, &str)]) -> String {
    vars.iter().fold(text.to_owned(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// The Cargo package name for service `name`: the name itself unless Cargo
/// would refuse it (a leading digit or `_`, a keyword, a clash), then
/// `service-NAME`.
fn package_name(name: &str) -> String {
    let normalised = name.replace('-', "_");
    let starts_with_letter = name.starts_with(|c: char| c.is_ascii_lowercase());
    let unusable = UNUSABLE_PACKAGE_NAMES
        .split_whitespace()
        .any(|n| n == normalised);
    if starts_with_letter && !unusable {
        name.to_owned()
    } else {
        format!("service-{name}")
    }
}

/// The SDK's `lib.rs` with its WIT path pointed at the scaffold's `wit/`.
fn sdk_lib_for_scaffold(source: &[u8]) -> anyhow::Result<Vec<u8>> {
    let text = std::str::from_utf8(source).context("the embedded SDK lib.rs is not UTF-8")?;
    if !text.contains(SDK_WIT_PATH) {
        // Only a change to the SDK can cause this; its test says so first.
        bail!(
            "the embedded SDK no longer reads its WIT from `{SDK_WIT_PATH}`; update `bazaar new`"
        );
    }
    Ok(text.replace(SDK_WIT_PATH, SCAFFOLD_WIT_PATH).into_bytes())
}

/// Every file under `dir` with its path relative to `dir`, skipping Python
/// bytecode that running the template's tests may have left behind.
fn walk<'a>(dir: &'a Dir<'a>) -> Vec<(&'a Path, &'a [u8])> {
    let root = dir.path();
    let mut files = Vec::new();
    let mut pending = vec![dir];
    while let Some(current) = pending.pop() {
        for entry in current.entries() {
            match entry {
                DirEntry::Dir(sub) if sub.path().ends_with("__pycache__") => {}
                DirEntry::Dir(sub) => pending.push(sub),
                DirEntry::File(file) if file.path().extension().is_some_and(|e| e == "pyc") => {}
                DirEntry::File(file) => {
                    let relative = file.path().strip_prefix(root).unwrap_or(file.path());
                    files.push((relative, file.contents()));
                }
            }
        }
    }
    files.sort_by_key(|(path, _)| *path);
    files
}

/// Refuses a `dir` that is a file or a directory with anything in it: a
/// scaffold never overwrites.
fn ensure_usable(dir: &Path) -> anyhow::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !dir.is_dir() {
        bail!(
            "{} exists and is not a directory; choose another with --dir",
            dir.display()
        );
    }
    let mut entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    if entries.next().is_some() {
        bail!(
            "{} already exists and is not empty; choose another with --dir",
            dir.display()
        );
    }
    Ok(())
}

/// Writes `files` under `dir`, shell scripts executable.
fn write(dir: &Path, files: &[ScaffoldFile]) -> anyhow::Result<()> {
    for file in files {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, &file.contents)
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        if path.extension().is_some_and(|e| e == "sh") {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                .with_context(|| format!("cannot make {} executable", path.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
