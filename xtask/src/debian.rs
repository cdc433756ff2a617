//! Debian packages for other architectures and components, fetched without touching the host's
//! dpkg: a private apt state under `target/debian/apt` (its own lists, cache, status and
//! sources list, `APT::Architecture` set per call) on the same Debian mirror the host's apt
//! already uses. `.deb` files are unpacked with `dpkg-deb`, and what was taken from them is
//! cached under `target/debian`, so the registry is asked once per machine and clone.
//!
//! This is how the Pi 4's own device tree (`bcm2711-rpi-4-b.dtb`, from Debian's arm64 kernel
//! package) reaches the `rpi4` system tests, and how the Pi firmware and Debian's kernel reach
//! later work.

use crate::workspace_root;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where fetched and unpacked files are kept.
pub fn cache_dir() -> PathBuf {
    workspace_root().join("target").join("debian")
}

/// The host's Debian mirror and keyring, from its apt sources (deb822 `.sources` files or
/// one-line `sources.list` entries) for the `bookworm` suite.
fn host_mirror() -> Result<(String, String)> {
    let default_keyring = "/usr/share/keyrings/debian-archive-keyring.gpg".to_string();
    let mut files: Vec<PathBuf> = vec![PathBuf::from("/etc/apt/sources.list")];
    if let Ok(entries) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else { continue };
        if file.extension().is_some_and(|e| e == "sources") {
            for stanza in text.split("\n\n") {
                let field =
                    |name: &str| stanza.lines().find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()));
                let suites = field("Suites:").unwrap_or_default();
                if suites.split_whitespace().any(|s| s == "bookworm") {
                    if let Some(uri) = field("URIs:").and_then(|u| u.split_whitespace().next().map(String::from)) {
                        return Ok((uri, field("Signed-By:").unwrap_or(default_keyring)));
                    }
                }
            }
        } else if file.file_name().is_some_and(|n| n == "sources.list") {
            for line in text.lines() {
                let words: Vec<&str> = line.split_whitespace().filter(|w| !w.starts_with('[')).collect();
                if words.first() == Some(&"deb") && words.get(2) == Some(&"bookworm") {
                    if let Some(uri) = words.get(1) {
                        return Ok((uri.to_string(), default_keyring));
                    }
                }
            }
        }
    }
    bail!("no Debian bookworm source in the host's apt configuration (/etc/apt/sources.list*)")
}

/// The private apt state's options for `architecture`.
fn apt_options(architecture: &str) -> Result<Vec<String>> {
    let root = cache_dir().join("apt");
    for dir in ["lists/partial", "cache/archives/partial", "etc"] {
        std::fs::create_dir_all(root.join(dir)).with_context(|| format!("creating {}", root.join(dir).display()))?;
    }
    let status = root.join("status");
    if !status.exists() {
        std::fs::write(&status, "")?;
    }
    let (uri, keyring) = host_mirror()?;
    let sources = root.join("etc/sources.list");
    let line = format!("deb [signed-by={keyring}] {uri} bookworm main non-free-firmware\n");
    if std::fs::read_to_string(&sources).ok().as_deref() != Some(&line) {
        std::fs::write(&sources, &line)?;
    }
    let path = |p: &Path| p.display().to_string();
    Ok(vec![
        format!("-oDir::State={}", path(&root)),
        format!("-oDir::State::Lists={}", path(&root.join("lists"))),
        format!("-oDir::State::status={}", path(&status)),
        format!("-oDir::Cache={}", path(&root.join("cache"))),
        format!("-oDir::Etc::SourceList={}", path(&sources)),
        "-oDir::Etc::SourceParts=/dev/null".to_string(),
        format!("-oAPT::Architecture={architecture}"),
        format!("-oAPT::Architectures::={architecture}"),
        "-oDebug::NoLocking=1".to_string(),
    ])
}

fn run(program: &str, args: &[String], dir: &Path) -> Result<String> {
    let output = Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .with_context(|| format!("running {program} (Debian's apt is needed to fetch packages)"))?;
    if !output.status.success() {
        bail!("{program} {} failed:\n{}", args.join(" "), String::from_utf8_lossy(&output.stderr));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Refreshes the private package lists (once per run of xtask).
fn update(architecture: &str) -> Result<()> {
    static UPDATED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut updated = UPDATED.lock().unwrap_or_else(|e| e.into_inner());
    if updated.iter().any(|a| a == architecture) {
        return Ok(());
    }
    let mut args = apt_options(architecture)?;
    args.extend(["-qq".to_string(), "update".to_string()]);
    eprintln!("xtask: updating the package lists of the private apt state ({architecture})");
    run("apt-get", &args, &cache_dir())?;
    updated.push(architecture.to_string());
    Ok(())
}

/// The package a metapackage (e.g. `linux-image-arm64`) depends on first.
pub fn resolve(package: &str, architecture: &str) -> Result<String> {
    update(architecture)?;
    let mut args = apt_options(architecture)?;
    args.extend(["depends".to_string(), package.to_string()]);
    let text = run("apt-cache", &args, &cache_dir())?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("Depends: ").map(|d| d.trim().to_string()))
        .with_context(|| format!("{package} depends on nothing"))
}

/// The cached `.deb` of `package` (an exact versioned name, as [`resolve`] gives), else
/// downloads it.
pub fn cached_or_download(package: &str, architecture: &str) -> Result<PathBuf> {
    let prefix = format!("{package}_");
    let cached = std::fs::read_dir(cache_dir().join("debs")).ok().and_then(|entries| {
        entries.flatten().map(|e| e.path()).find(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
    });
    match cached {
        Some(deb) => Ok(deb),
        None => download(package, architecture),
    }
}

/// Downloads `package` for `architecture` into the cache; returns the `.deb`.
pub fn download(package: &str, architecture: &str) -> Result<PathBuf> {
    update(architecture)?;
    let dir = cache_dir().join("debs");
    std::fs::create_dir_all(&dir)?;
    let mut args = apt_options(architecture)?;
    args.extend(["-qq".to_string(), "download".to_string(), package.to_string()]);
    run("apt-get", &args, &dir)?;
    let prefix = format!("{package}_");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&prefix) && n.ends_with(".deb"))
        })
        .collect();
    found.sort();
    found.pop().with_context(|| format!("apt-get download {package} left no .deb in {}", dir.display()))
}

/// The paths of `deb`'s members (`./usr/...`).
pub fn members(deb: &Path) -> Result<Vec<String>> {
    let listing = run("dpkg-deb", &["-c".to_string(), deb.display().to_string()], &cache_dir())?;
    Ok(listing.lines().filter_map(|l| l.split_whitespace().nth(5).map(String::from)).collect())
}

/// Unpacks the members of `deb` whose paths end with `suffix` into `into`; returns them.
pub fn extract(deb: &Path, suffix: &str, into: &Path) -> Result<Vec<PathBuf>> {
    extract_any(deb, &[suffix], into)
}

/// Unpacks the members of `deb` whose paths end with one of `suffixes` into `into` (one pass
/// over the package); returns them. Every suffix must match a member.
pub fn extract_any(deb: &Path, suffixes: &[&str], into: &Path) -> Result<Vec<PathBuf>> {
    let all = members(deb)?;
    if let Some(missing) = suffixes.iter().find(|s| !all.iter().any(|m| m.ends_with(*s))) {
        bail!("{} has no member ending in {missing}", deb.display());
    }
    let members: Vec<String> = all.into_iter().filter(|m| suffixes.iter().any(|s| m.ends_with(s))).collect();
    std::fs::create_dir_all(into)?;
    let tar = format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' {}",
        deb.display(),
        into.display(),
        members.iter().map(|m| format!("'{m}'")).collect::<Vec<_>>().join(" ")
    );
    let status = Command::new("sh").arg("-c").arg(&tar).status().context("running dpkg-deb | tar")?;
    if !status.success() {
        bail!("unpacking {} failed", deb.display());
    }
    Ok(members.iter().map(|m| into.join(m.trim_start_matches("./"))).collect())
}

/// Several processes (test binaries, xtask runs) may fetch at once: one does, under a lock
/// file, while the others wait; the lock is released when the returned file is dropped.
pub fn lock() -> Result<std::fs::File> {
    std::fs::create_dir_all(cache_dir())?;
    let lock = std::fs::File::create(cache_dir().join(".lock"))?;
    // SAFETY: flock on a descriptor we own; released when `lock` is dropped.
    if unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(&lock), libc::LOCK_EX) } != 0 {
        bail!("locking {}", cache_dir().join(".lock").display());
    }
    Ok(lock)
}

/// The Raspberry Pi 4's own device tree, from Debian's current arm64 kernel package (fetched
/// and cached on first use): what the Pi firmware would hand Belfry.
pub fn pi4_device_tree() -> Result<PathBuf> {
    let cached = cache_dir().join("bcm2711-rpi-4-b.dtb");
    if cached.exists() {
        return Ok(cached);
    }
    let _lock = lock()?;
    if cached.exists() {
        return Ok(cached);
    }
    let kernel = resolve("linux-image-arm64", "arm64")?;
    let deb = download(&kernel, "arm64")?;
    let unpacked = cache_dir().join("unpacked");
    let found = extract(&deb, "/broadcom/bcm2711-rpi-4-b.dtb", &unpacked)?;
    let temporary = cached.with_extension("tmp");
    std::fs::copy(&found[0], &temporary)?;
    std::fs::rename(&temporary, &cached)?;
    eprintln!("xtask: the Pi 4's device tree from {kernel}: {}", cached.display());
    Ok(cached)
}
