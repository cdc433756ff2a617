//! Reading a FIT bundle into VM specifications.
//!
//! A FIT (U-Boot's Flattened Image Tree, `doc/usage/fit/source_file_format.rst`) is a device
//! tree: `/images/NAME` nodes carry a blob (`data`, or `data-offset` past the tree's end, or
//! `data-position` from the bundle's start, with `data-size`) and `hash*` children
//! (`algo = "sha256"`, `value`); `/configurations/NAME` nodes name the images that go together
//! (`kernel`, `ramdisk`, `fdt`). Belfry reads each configuration as one VM and adds its own
//! properties to it: `belfry,name`, `belfry,vcpus`, `belfry,memory` (bytes, one or two cells),
//! `belfry,cpus` (host CPU indices), `belfry,cmdline`, and its devices: `belfry,disk` (the name
//! of an image, sha256-checked like the others, that is the VM's virtio-blk disk),
//! `belfry,console` (`"pl011"`, the default, or `"virtio"`: the console is virtio-console's
//! hvc0) and `belfry,net` (the name of a link: VMs naming the same link are joined by
//! virtio-net).
//!
//! One configuration's fault refuses that VM only ([`VmError`]); only a bundle that is not a
//! FIT at all is refused whole ([`BundleError`]). Every image a VM uses must carry a sha256
//! hash, and every hash is checked.

use crate::image::{self, HeaderError, ImageHeader};
use crate::tree::{number, string, Tree, TreeError};
use alloc::string::String;
use alloc::vec::Vec;
use sha2::{Digest, Sha256};

/// Most VMs a bundle may describe.
pub const MAX_VMS: usize = 16;
/// Most VCPUs a VM may have.
pub const MAX_VCPUS: u32 = 8;
/// Longest VM name.
pub const MAX_NAME: usize = 32;
/// Longest command line.
pub const MAX_CMDLINE: usize = 1024;
/// Memory a VM gets when its configuration does not say.
pub const DEFAULT_MEMORY: u64 = 64 << 20;
/// Host CPU indices a placement may name (Belfry's limit on CPUs).
pub const MAX_HOST_CPUS: u32 = 64;

/// Why the whole bundle is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleError {
    /// Not a device tree, or a malformed one.
    NotAFit(TreeError),
    /// No `/images` or no `/configurations` with at least one configuration.
    NoConfigurations,
    /// More than [`MAX_VMS`] configurations.
    TooManyVms,
}

/// Why one VM of a bundle is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmError {
    /// `belfry,name` is not 1 to 32 characters of `[A-Za-z0-9._-]`.
    BadName,
    /// Another configuration has the same name.
    DuplicateName,
    /// The configuration names no kernel.
    NoKernel,
    /// The configuration names an image (`kernel`, `ramdisk` or `fdt`) that `/images` lacks.
    MissingImage(&'static str),
    /// An image's data lies outside the bundle, or it has none.
    BadData(&'static str),
    /// An image is compressed (Belfry loads images as they are).
    Compressed(&'static str),
    /// An image carries no sha256 hash node.
    NoHash(&'static str),
    /// An image's sha256 does not match its data.
    HashMismatch(&'static str),
    /// The kernel is not an arm64 Image and names no `load` address, or its header is refused.
    Kernel(KernelError),
    /// `belfry,vcpus` is 0 or above [`MAX_VCPUS`].
    BadVcpus(u64),
    /// `belfry,memory` is malformed or not a positive multiple of 2 MiB.
    BadMemory(u64),
    /// `belfry,cpus` is empty, malformed or names a CPU index of [`MAX_HOST_CPUS`] or more.
    BadCpus,
    /// `belfry,cmdline` is not a string, or longer than [`MAX_CMDLINE`].
    BadCmdline,
    /// `belfry,console` is not `"pl011"` or `"virtio"`.
    BadConsole,
    /// `belfry,net` is not a link name (1 to 32 characters of `[A-Za-z0-9._-]`).
    BadNet,
}

/// Which device is the VM's console.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ConsoleKind {
    /// The PL011 UART (ttyAMA0).
    #[default]
    Pl011,
    /// virtio-console's first port (hvc0); the PL011 stays, for early output.
    Virtio,
}

/// What is wrong with a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelError {
    /// Neither an arm64 Image nor a raw binary with a `load` address.
    NotLoadable,
    /// The arm64 Image header is refused.
    Header(HeaderError),
}

/// How the kernel is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelKind {
    /// An arm64 Image: placed `text_offset` above a 2 MiB-aligned base, entered at its start.
    Image(ImageHeader),
    /// A raw binary placed at guest-physical `load` and entered at `entry`.
    Raw { load: u64, entry: u64 },
}

/// One VM as the bundle describes it; blobs are slices of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmSpec<'a> {
    pub name: String,
    pub vcpus: u32,
    pub memory: u64,
    /// Host CPUs the VCPUs run on, VCPU n on `cpus[n % len]`; `None`: spread over all.
    pub cpus: Option<Vec<u32>>,
    pub cmdline: String,
    pub kernel: &'a [u8],
    pub kernel_kind: KernelKind,
    pub ramdisk: Option<&'a [u8]>,
    pub fdt: Option<&'a [u8]>,
    /// The virtio-blk disk's image.
    pub disk: Option<&'a [u8]>,
    pub console: ConsoleKind,
    /// The virtio-net link the VM is on.
    pub net: Option<String>,
}

/// One configuration: its VM's name and the VM, or why it is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    pub name: String,
    pub vm: Result<VmSpec<'a>, VmError>,
}

/// A parsed bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle<'a> {
    pub entries: Vec<Entry<'a>>,
}

fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A printable rendering of an untrusted name, for messages about a refused VM.
fn printable(name: &str) -> String {
    name.chars().take(MAX_NAME).map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

/// Parses and checks `blob`, a whole bundle.
pub fn parse(blob: &[u8]) -> Result<Bundle<'_>, BundleError> {
    let tree = Tree::parse(blob).map_err(BundleError::NotAFit)?;
    let images = tree.child(0, "images").ok_or(BundleError::NoConfigurations)?;
    let configurations = tree.child(0, "configurations").ok_or(BundleError::NoConfigurations)?;
    let list: Vec<usize> = tree.children(configurations).map(|(i, _)| i).collect();
    if list.is_empty() {
        return Err(BundleError::NoConfigurations);
    }
    if list.len() > MAX_VMS {
        return Err(BundleError::TooManyVms);
    }
    let mut entries: Vec<Entry<'_>> = Vec::new();
    for configuration in list {
        let node_name = tree.nodes[configuration].name;
        let name = tree.property(configuration, "belfry,name").and_then(string).unwrap_or(node_name);
        let mut vm =
            if valid_name(name) { read_vm(&tree, blob, images, configuration, name) } else { Err(VmError::BadName) };
        if vm.is_ok() && entries.iter().any(|e| e.name == name) {
            vm = Err(VmError::DuplicateName);
        }
        entries.push(Entry { name: printable(name), vm });
    }
    Ok(Bundle { entries })
}

/// The data of image node `node` (`what` names it in errors).
fn image_data<'a>(tree: &Tree<'a>, blob: &'a [u8], node: usize, what: &'static str) -> Result<&'a [u8], VmError> {
    let data = if let Some(data) = tree.property(node, "data") {
        data
    } else {
        let size = tree.property(node, "data-size").and_then(number).ok_or(VmError::BadData(what))?;
        let start = match (tree.property(node, "data-offset"), tree.property(node, "data-position")) {
            (Some(offset), _) => number(offset)
                .and_then(|o| (tree.total_size as u64).next_multiple_of(4).checked_add(o))
                .ok_or(VmError::BadData(what))?,
            (None, Some(position)) => number(position).ok_or(VmError::BadData(what))?,
            (None, None) => return Err(VmError::BadData(what)),
        };
        let end = start.checked_add(size).ok_or(VmError::BadData(what))?;
        let range = usize::try_from(start).ok().zip(usize::try_from(end).ok()).ok_or(VmError::BadData(what))?;
        blob.get(range.0..range.1).ok_or(VmError::BadData(what))?
    };
    if data.is_empty() {
        return Err(VmError::BadData(what));
    }
    if let Some(compression) = tree.property(node, "compression").and_then(string) {
        if compression != "none" {
            return Err(VmError::Compressed(what));
        }
    }
    let mut hashed = false;
    for (hash, child) in tree.children(node) {
        if !child.name.starts_with("hash") {
            continue;
        }
        if tree.property(hash, "algo").and_then(string) != Some("sha256") {
            continue;
        }
        let value = tree.property(hash, "value").ok_or(VmError::NoHash(what))?;
        if value != Sha256::digest(data).as_slice() {
            return Err(VmError::HashMismatch(what));
        }
        hashed = true;
    }
    if !hashed {
        return Err(VmError::NoHash(what));
    }
    Ok(data)
}

/// The image a configuration's property `what` names, if it names one.
fn referenced<'a>(
    tree: &Tree<'a>,
    blob: &'a [u8],
    images: usize,
    configuration: usize,
    what: &'static str,
) -> Result<Option<(usize, &'a [u8])>, VmError> {
    let Some(value) = tree.property(configuration, what) else { return Ok(None) };
    let name = string(value).ok_or(VmError::MissingImage(what))?;
    let node = tree.child(images, name).ok_or(VmError::MissingImage(what))?;
    Ok(Some((node, image_data(tree, blob, node, what)?)))
}

fn read_vm<'a>(
    tree: &Tree<'a>,
    blob: &'a [u8],
    images: usize,
    configuration: usize,
    name: &str,
) -> Result<VmSpec<'a>, VmError> {
    let vcpus = match tree.property(configuration, "belfry,vcpus") {
        None => 1,
        Some(value) => match number(value) {
            Some(n @ 1..=8) => n as u32,
            other => return Err(VmError::BadVcpus(other.unwrap_or(0))),
        },
    };
    const _: () = assert!(MAX_VCPUS == 8);
    let memory = match tree.property(configuration, "belfry,memory") {
        None => DEFAULT_MEMORY,
        Some(value) => match number(value) {
            Some(m) if m > 0 && m % (2 << 20) == 0 => m,
            other => return Err(VmError::BadMemory(other.unwrap_or(0))),
        },
    };
    let cpus = match tree.property(configuration, "belfry,cpus") {
        None => None,
        Some(value) => {
            if value.is_empty() || value.len() % 4 != 0 || value.len() / 4 > MAX_HOST_CPUS as usize {
                return Err(VmError::BadCpus);
            }
            let list: Vec<u32> = value.chunks_exact(4).map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]])).collect();
            if list.iter().any(|&cpu| cpu >= MAX_HOST_CPUS) {
                return Err(VmError::BadCpus);
            }
            Some(list)
        }
    };
    let cmdline = match tree.property(configuration, "belfry,cmdline") {
        None => String::new(),
        Some(value) => {
            let text = string(value).ok_or(VmError::BadCmdline)?;
            if text.len() > MAX_CMDLINE {
                return Err(VmError::BadCmdline);
            }
            String::from(text)
        }
    };
    let (kernel_node, kernel) = referenced(tree, blob, images, configuration, "kernel")?.ok_or(VmError::NoKernel)?;
    let kernel_kind = if image::is_image(kernel) {
        KernelKind::Image(image::parse(kernel).map_err(|e| VmError::Kernel(KernelError::Header(e)))?)
    } else {
        let load =
            tree.property(kernel_node, "load").and_then(number).ok_or(VmError::Kernel(KernelError::NotLoadable))?;
        let entry = tree.property(kernel_node, "entry").and_then(number).unwrap_or(load);
        KernelKind::Raw { load, entry }
    };
    let ramdisk = referenced(tree, blob, images, configuration, "ramdisk")?.map(|(_, d)| d);
    let fdt = referenced(tree, blob, images, configuration, "fdt")?.map(|(_, d)| d);
    let disk = referenced(tree, blob, images, configuration, "belfry,disk")?.map(|(_, d)| d);
    let console = match tree.property(configuration, "belfry,console").map(string) {
        None | Some(Some("pl011")) => ConsoleKind::Pl011,
        Some(Some("virtio")) => ConsoleKind::Virtio,
        Some(_) => return Err(VmError::BadConsole),
    };
    let net = match tree.property(configuration, "belfry,net").map(string) {
        None => None,
        Some(Some(link)) if valid_name(link) => Some(String::from(link)),
        Some(_) => return Err(VmError::BadNet),
    };
    Ok(VmSpec {
        name: String::from(name),
        vcpus,
        memory,
        cpus,
        cmdline,
        kernel,
        kernel_kind,
        ramdisk,
        fdt,
        disk,
        console,
        net,
    })
}

impl core::fmt::Display for BundleError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BundleError::NotAFit(error) => write!(f, "not a FIT image ({error:?} device tree)"),
            BundleError::NoConfigurations => write!(f, "a FIT without /images or /configurations"),
            BundleError::TooManyVms => write!(f, "more than {MAX_VMS} configurations"),
        }
    }
}

impl core::fmt::Display for VmError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            VmError::BadName => write!(f, "its name is not 1 to {MAX_NAME} characters of A-Z a-z 0-9 . _ -"),
            VmError::DuplicateName => write!(f, "another VM has the same name"),
            VmError::NoKernel => write!(f, "its configuration names no kernel"),
            VmError::MissingImage(what) => write!(f, "its {what} image is missing from /images"),
            VmError::BadData(what) => write!(f, "its {what} image has no data inside the bundle"),
            VmError::Compressed(what) => write!(f, "its {what} image is compressed"),
            VmError::NoHash(what) => write!(f, "its {what} image has no sha256 hash"),
            VmError::HashMismatch(what) => write!(f, "the sha256 of its {what} image does not match"),
            VmError::Kernel(KernelError::NotLoadable) => {
                write!(f, "its kernel is not an arm64 Image and has no load address")
            }
            VmError::Kernel(KernelError::Header(error)) => {
                write!(f, "its kernel's Image header is refused ({error:?})")
            }
            VmError::BadVcpus(n) => write!(f, "it asks for {n} VCPUs (1 to {MAX_VCPUS})"),
            VmError::BadMemory(m) => write!(f, "its memory size {m:#x} is not a positive multiple of 2 MiB"),
            VmError::BadCpus => write!(f, "its belfry,cpus placement is malformed or names a CPU past {MAX_HOST_CPUS}"),
            VmError::BadCmdline => write!(f, "its command line is not a string of at most {MAX_CMDLINE} bytes"),
            VmError::BadConsole => write!(f, "its belfry,console is not \"pl011\" or \"virtio\""),
            VmError::BadNet => write!(f, "its belfry,net is not a link name (1 to {MAX_NAME} of A-Z a-z 0-9 . _ -)"),
        }
    }
}
