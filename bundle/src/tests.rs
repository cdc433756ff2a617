use crate::fit::{DEFAULT_MEMORY, MAX_VMS};
use crate::image::{ImageHeader, MAGIC};
use crate::tree::TreeError;
use crate::writer::{write, VmInput};
use crate::*;
use sha2::{Digest, Sha256};

fn kernel(text_offset: u64, image_size: u64) -> Vec<u8> {
    let mut k = vec![0u8; 256];
    k[8..16].copy_from_slice(&text_offset.to_le_bytes());
    k[16..24].copy_from_slice(&image_size.to_le_bytes());
    k[24..32].copy_from_slice(&2u64.to_le_bytes());
    k[56..60].copy_from_slice(&MAGIC);
    k[200] = 0xaa;
    k
}

fn two() -> Vec<VmInput> {
    vec![
        VmInput {
            name: "alpha".into(),
            kernel: kernel(0, 0x1000),
            initrd: Some(vec![7; 1000]),
            vcpus: Some(2),
            memory: Some(32 << 20),
            cpus: Some(vec![1]),
            cmdline: Some("console=ttyAMA0".into()),
            ..VmInput::default()
        },
        VmInput { name: "beta".into(), kernel: vec![0x14; 40], load: Some(0x4008_0000), ..VmInput::default() },
    ]
}

#[test]
fn a_packed_bundle_reads_back() {
    let inputs = two();
    let blob = write(&inputs).unwrap();
    let bundle = parse(&blob).unwrap();
    assert_eq!(bundle.entries.len(), 2);
    let a = bundle.entries[0].vm.as_ref().unwrap();
    assert_eq!(bundle.entries[0].name, "alpha");
    assert_eq!((a.vcpus, a.memory, a.cpus.as_deref()), (2, 32 << 20, Some(&[1u32][..])));
    assert_eq!(a.cmdline, "console=ttyAMA0");
    assert_eq!(a.kernel, &inputs[0].kernel[..]);
    assert_eq!(a.kernel_kind, KernelKind::Image(ImageHeader { text_offset: 0, image_size: 0x1000 }));
    assert_eq!(a.ramdisk, Some(&[7u8; 1000][..]));
    assert_eq!(a.fdt, None);
    let b = bundle.entries[1].vm.as_ref().unwrap();
    assert_eq!((b.name.as_str(), b.vcpus, b.memory, b.cpus.clone()), ("beta", 1, DEFAULT_MEMORY, None));
    assert_eq!(b.kernel_kind, KernelKind::Raw { load: 0x4008_0000, entry: 0x4008_0000 });
}

#[test]
fn devices_read_back_and_bad_ones_are_refused() {
    let mut inputs = two();
    inputs[0].disk = Some(vec![0xd1; 4096]);
    inputs[0].virtio_console = true;
    inputs[0].net = Some("lan0".into());
    inputs[1].net = Some("lan0".into());
    let blob = write(&inputs).unwrap();
    let bundle = parse(&blob).unwrap();
    let a = bundle.entries[0].vm.as_ref().unwrap();
    assert_eq!((a.disk, a.console, a.net.as_deref()), (Some(&[0xd1u8; 4096][..]), ConsoleKind::Virtio, Some("lan0")));
    let b = bundle.entries[1].vm.as_ref().unwrap();
    assert_eq!((b.disk, b.console, b.net.as_deref()), (None, ConsoleKind::Pl011, Some("lan0")));
    // The disk's sha256 is checked like every image's.
    let mut corrupted = blob.clone();
    let at = find(&corrupted, &[0xd1; 4096]);
    corrupted[at + 4000] = 0;
    assert_eq!(parse(&corrupted).unwrap().entries[0].vm, Err(VmError::HashMismatch("belfry,disk")));
    let mut inputs = two();
    inputs[0].net = Some("no spaces".into());
    assert_eq!(parse(&write(&inputs).unwrap()).unwrap().entries[0].vm, Err(VmError::BadNet));
    // A console that is neither: the property's value rewritten in place.
    let mut inputs = two();
    inputs[1].virtio_console = true;
    let mut blob = write(&inputs).unwrap();
    let at = find(&blob, b"virtio\0");
    blob[at..at + 6].copy_from_slice(b"serial");
    let bundle = parse(&blob).unwrap();
    assert_eq!(bundle.entries[1].vm, Err(VmError::BadConsole));
    assert!(bundle.entries[0].vm.is_ok());
}

/// Finds `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).unwrap()
}

#[test]
fn a_corrupted_image_refuses_only_its_vm() {
    let inputs = two();
    let mut blob = write(&inputs).unwrap();
    let at = find(&blob, &inputs[0].kernel) + 200;
    blob[at] ^= 1;
    let bundle = parse(&blob).unwrap();
    assert_eq!(bundle.entries[0].vm, Err(VmError::HashMismatch("kernel")));
    assert_eq!(bundle.entries[0].name, "alpha");
    assert!(bundle.entries[1].vm.is_ok());
    // The ramdisk's hash is checked too.
    let mut blob = write(&inputs).unwrap();
    let at = find(&blob, &[7; 1000]);
    blob[at + 999] = 8;
    assert_eq!(parse(&blob).unwrap().entries[0].vm, Err(VmError::HashMismatch("ramdisk")));
}

#[test]
fn bad_configurations_are_refused_by_name() {
    let mut inputs = two();
    inputs[0].vcpus = Some(0);
    inputs[1].vcpus = Some(9);
    let blob = write(&inputs).unwrap();
    let bundle = parse(&blob).unwrap();
    assert_eq!(bundle.entries[0].vm, Err(VmError::BadVcpus(0)));
    assert_eq!(bundle.entries[1].vm, Err(VmError::BadVcpus(9)));
    let mut inputs = two();
    inputs[0].memory = Some(3 << 20);
    inputs[1].cpus = Some(vec![64]);
    let blob = write(&inputs).unwrap();
    let bundle = parse(&blob).unwrap();
    assert_eq!(bundle.entries[0].vm, Err(VmError::BadMemory(3 << 20)));
    assert_eq!(bundle.entries[1].vm, Err(VmError::BadCpus));
    let mut inputs = two();
    inputs[0].name = "no spaces".into();
    inputs[1].name = "alpha".into();
    let blob = write(&inputs).unwrap();
    let bundle = parse(&blob).unwrap();
    assert_eq!(bundle.entries[0].vm, Err(VmError::BadName));
    assert!(bundle.entries[1].vm.is_ok(), "the first 'alpha' was refused, so this one is not a duplicate");
    let mut inputs = two();
    inputs[1].name = "alpha".into();
    assert_eq!(parse(&write(&inputs).unwrap()).unwrap().entries[1].vm, Err(VmError::DuplicateName));
    let mut inputs = two();
    inputs[1].load = None;
    assert_eq!(parse(&write(&inputs).unwrap()).unwrap().entries[1].vm, Err(VmError::Kernel(KernelError::NotLoadable)));
    let mut inputs = two();
    inputs[0].kernel = kernel(0, 16);
    assert_eq!(
        parse(&write(&inputs).unwrap()).unwrap().entries[0].vm,
        Err(VmError::Kernel(KernelError::Header(image::HeaderError::BadImageSize)))
    );
}

#[test]
fn whole_bundle_faults() {
    let blob = write(&two()).unwrap();
    for cut in [0, 10, 39, 40, 100, blob.len() / 2, blob.len() - 1] {
        assert!(parse(&blob[..cut]).is_err(), "truncated at {cut}");
    }
    assert_eq!(
        parse(b"not a fit at all, just some text........"),
        Err(BundleError::NotAFit(TreeError::NotADeviceTree))
    );
    let mut fdt = vm_fdt::FdtWriter::new().unwrap();
    let root = fdt.begin_node("").unwrap();
    fdt.end_node(root).unwrap();
    assert_eq!(parse(&fdt.finish().unwrap()), Err(BundleError::NoConfigurations));
    let many: Vec<VmInput> = (0..MAX_VMS + 1).map(|i| VmInput { name: format!("vm{i}"), ..two().remove(1) }).collect();
    assert!(write(&many).is_err());
}

/// A bundle laid out as `mkimage -E` writes it: data after the tree, found by `data-offset`
/// (from the tree's 4-byte-aligned end).
#[test]
fn external_data() {
    let kernel = kernel(0, 0x1000);
    let ramdisk = vec![9u8; 77];
    let build = |offset_kind: &str, hash: &[u8]| {
        let mut fdt = vm_fdt::FdtWriter::new().unwrap();
        let root = fdt.begin_node("").unwrap();
        let images = fdt.begin_node("images").unwrap();
        for (name, data, at) in [("kernel-1", &kernel, 0u32), ("ramdisk-1", &ramdisk, 256)] {
            let node = fdt.begin_node(name).unwrap();
            fdt.property_u32("data-size", data.len() as u32).unwrap();
            fdt.property_u32(offset_kind, at).unwrap();
            let h = fdt.begin_node("hash-1").unwrap();
            fdt.property_string("algo", "sha256").unwrap();
            let digest = Sha256::digest(data);
            fdt.property("value", if name == "kernel-1" { hash } else { digest.as_slice() }).unwrap();
            fdt.end_node(h).unwrap();
            fdt.end_node(node).unwrap();
        }
        fdt.end_node(images).unwrap();
        let confs = fdt.begin_node("configurations").unwrap();
        let conf = fdt.begin_node("conf-1").unwrap();
        fdt.property_string("kernel", "kernel-1").unwrap();
        fdt.property_string("ramdisk", "ramdisk-1").unwrap();
        fdt.end_node(conf).unwrap();
        fdt.end_node(confs).unwrap();
        fdt.end_node(root).unwrap();
        let mut blob = fdt.finish().unwrap();
        blob.resize(blob.len().next_multiple_of(4), 0);
        let base = blob.len();
        blob.resize(base + 512, 0);
        let (k, r) = (base, base + 256);
        blob[k..k + kernel.len()].copy_from_slice(&kernel);
        blob[r..r + ramdisk.len()].copy_from_slice(&ramdisk);
        Some(blob)
    };
    let good = build("data-offset", Sha256::digest(&kernel).as_slice()).unwrap();
    let bundle = parse(&good).unwrap();
    let vm = bundle.entries[0].vm.as_ref().unwrap();
    assert_eq!(bundle.entries[0].name, "conf-1", "without belfry,name the configuration names the VM");
    assert_eq!((vm.kernel, vm.ramdisk), (&kernel[..], Some(&ramdisk[..])));
    let bad = build("data-offset", &[0; 32]).unwrap();
    assert_eq!(parse(&bad).unwrap().entries[0].vm, Err(VmError::HashMismatch("kernel")));
    // Data past the end of the bundle.
    assert_eq!(parse(&good[..good.len() - 300]).unwrap().entries[0].vm, Err(VmError::BadData("kernel")));
}

/// FITs made by U-Boot's `mkimage` (fixtures/mkimage.its says how), with the data embedded and
/// external (`-E`), including a CRC32 hash node beside the sha256 one.
#[test]
fn bundles_made_by_mkimage_are_accepted() {
    let hello = include_bytes!("../tests/fixtures/hello.img");
    let smp = include_bytes!("../tests/fixtures/smp.img");
    for blob in
        [&include_bytes!("../tests/fixtures/mkimage.itb")[..], include_bytes!("../tests/fixtures/mkimage-external.itb")]
    {
        let bundle = parse(blob).unwrap();
        let names: Vec<&str> = bundle.entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["hello", "smp"]);
        let a = bundle.entries[0].vm.as_ref().unwrap();
        assert_eq!((a.vcpus, a.memory, a.kernel), (1, 32 << 20, &hello[..]));
        assert!(matches!(a.kernel_kind, KernelKind::Image(_)));
        let b = bundle.entries[1].vm.as_ref().unwrap();
        assert_eq!((b.vcpus, b.memory, b.kernel), (2, 32 << 20, &smp[..]));
        let mut corrupt = blob.to_vec();
        let at = find(&corrupt, b"hello: running at EL1");
        corrupt[at] ^= 1;
        assert_eq!(parse(&corrupt).unwrap().entries[0].vm, Err(VmError::HashMismatch("kernel")));
    }
}
