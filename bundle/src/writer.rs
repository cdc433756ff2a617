//! Writing a FIT bundle (`cargo xtask pack`): one configuration per VM, every blob embedded as
//! `data` with a sha256 `hash-1` node, as `mkimage -f` writes them.

use crate::fit::MAX_VMS;
use sha2::{Digest, Sha256};
use std::string::{String, ToString};
use std::vec::Vec;
use vm_fdt::FdtWriter;

/// One VM to pack.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VmInput {
    pub name: String,
    pub kernel: Vec<u8>,
    /// For a raw kernel (not an arm64 Image): where it is loaded and entered.
    pub load: Option<u64>,
    pub initrd: Option<Vec<u8>>,
    pub dtb: Option<Vec<u8>>,
    pub vcpus: Option<u32>,
    pub memory: Option<u64>,
    pub cpus: Option<Vec<u32>>,
    pub cmdline: Option<String>,
    /// The virtio-blk disk image.
    pub disk: Option<Vec<u8>>,
    /// virtio-console (hvc0) as the console instead of the PL011.
    pub virtio_console: bool,
    /// The virtio-net link.
    pub net: Option<String>,
}

fn image(fdt: &mut FdtWriter, node: &str, kind: &str, data: &[u8], load: Option<u64>) -> Result<(), vm_fdt::Error> {
    let image = fdt.begin_node(node)?;
    fdt.property_string("description", node)?;
    fdt.property("data", data)?;
    fdt.property_string("type", kind)?;
    fdt.property_string("arch", "arm64")?;
    if kind == "kernel" {
        fdt.property_string("os", "linux")?;
    }
    fdt.property_string("compression", "none")?;
    if let Some(load) = load {
        fdt.property_u64("load", load)?;
        fdt.property_u64("entry", load)?;
    }
    let hash = fdt.begin_node("hash-1")?;
    fdt.property_string("algo", "sha256")?;
    fdt.property("value", Sha256::digest(data).as_slice())?;
    fdt.end_node(hash)?;
    fdt.end_node(image)
}

/// The bundle for `vms`.
pub fn write(vms: &[VmInput]) -> Result<Vec<u8>, String> {
    if vms.is_empty() || vms.len() > MAX_VMS {
        return Err(format!("a bundle holds 1 to {MAX_VMS} VMs, not {}", vms.len()));
    }
    let e = |error: vm_fdt::Error| error.to_string();
    let mut fdt = FdtWriter::new().map_err(e)?;
    let root = fdt.begin_node("").map_err(e)?;
    fdt.property_string("description", "Belfry guest bundle").map_err(e)?;
    fdt.property_u32("#address-cells", 1).map_err(e)?;
    let images = fdt.begin_node("images").map_err(e)?;
    for (index, vm) in vms.iter().enumerate() {
        image(&mut fdt, &format!("kernel-{index}"), "kernel", &vm.kernel, vm.load).map_err(e)?;
        if let Some(initrd) = &vm.initrd {
            image(&mut fdt, &format!("ramdisk-{index}"), "ramdisk", initrd, None).map_err(e)?;
        }
        if let Some(dtb) = &vm.dtb {
            image(&mut fdt, &format!("fdt-{index}"), "flat_dt", dtb, None).map_err(e)?;
        }
        if let Some(disk) = &vm.disk {
            image(&mut fdt, &format!("disk-{index}"), "filesystem", disk, None).map_err(e)?;
        }
    }
    fdt.end_node(images).map_err(e)?;
    let configurations = fdt.begin_node("configurations").map_err(e)?;
    fdt.property_string("default", "conf-0").map_err(e)?;
    for (index, vm) in vms.iter().enumerate() {
        let conf = fdt.begin_node(&format!("conf-{index}")).map_err(e)?;
        fdt.property_string("description", &vm.name).map_err(e)?;
        fdt.property_string("kernel", &format!("kernel-{index}")).map_err(e)?;
        if vm.initrd.is_some() {
            fdt.property_string("ramdisk", &format!("ramdisk-{index}")).map_err(e)?;
        }
        if vm.dtb.is_some() {
            fdt.property_string("fdt", &format!("fdt-{index}")).map_err(e)?;
        }
        fdt.property_string("belfry,name", &vm.name).map_err(e)?;
        if let Some(vcpus) = vm.vcpus {
            fdt.property_u32("belfry,vcpus", vcpus).map_err(e)?;
        }
        if let Some(memory) = vm.memory {
            fdt.property_u64("belfry,memory", memory).map_err(e)?;
        }
        if let Some(cpus) = &vm.cpus {
            fdt.property_array_u32("belfry,cpus", cpus).map_err(e)?;
        }
        if let Some(cmdline) = &vm.cmdline {
            fdt.property_string("belfry,cmdline", cmdline).map_err(e)?;
        }
        if vm.disk.is_some() {
            fdt.property_string("belfry,disk", &format!("disk-{index}")).map_err(e)?;
        }
        if vm.virtio_console {
            fdt.property_string("belfry,console", "virtio").map_err(e)?;
        }
        if let Some(net) = &vm.net {
            fdt.property_string("belfry,net", net).map_err(e)?;
        }
        fdt.end_node(conf).map_err(e)?;
    }
    fdt.end_node(configurations).map_err(e)?;
    fdt.end_node(root).map_err(e)?;
    fdt.finish().map_err(e)
}
