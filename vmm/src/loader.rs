//! Where a VM's images go in guest-physical memory (booting.rst for arm64 Images), as a pure
//! plan: [`plan`] checks a bundle's VM against [`crate::layout`] and says where the kernel,
//! initrd and device tree lie and where the boot VCPU starts, or why they do not fit. The VM
//! then copies the blobs in through its checked guest-memory accessors.

use crate::layout::{DTB_SLOT, KERNEL_ALIGN, PAGE, RAM_BASE, RAM_LIMIT};
use bundle::{KernelKind, VmSpec};

/// Where everything goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Guest RAM: `[RAM_BASE, ram_end)`.
    pub ram_end: u64,
    /// The kernel's first byte and the boot VCPU's entry point.
    pub kernel: u64,
    pub entry: u64,
    /// The end of what the kernel occupies once running (Image: base + image_size).
    pub kernel_end: u64,
    /// The initrd's first byte, if there is one.
    pub initrd: Option<u64>,
    /// The device tree's first byte.
    pub dtb: u64,
}

/// Why a VM's images do not fit its memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The memory size runs past Belfry's guest-physical space.
    MemoryTooLarge,
    /// The kernel (its image_size, for an Image) and the device-tree slot need more RAM.
    KernelDoesNotFit,
    /// A raw kernel's `load` address is outside RAM or not 4-byte aligned, or its entry point
    /// is outside the kernel.
    BadLoadAddress,
    /// The initrd does not fit between the kernel and the device tree.
    InitrdDoesNotFit,
    /// The bundle's device tree is larger than its 2 MiB slot.
    DeviceTreeTooLarge,
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            LoadError::MemoryTooLarge => "its memory runs past the 64 GiB guest-physical space",
            LoadError::KernelDoesNotFit => "its kernel and the 2 MiB device-tree slot do not fit its memory",
            LoadError::BadLoadAddress => "its raw kernel's load or entry address is outside its RAM or unaligned",
            LoadError::InitrdDoesNotFit => "its initrd does not fit between the kernel and the device tree",
            LoadError::DeviceTreeTooLarge => "its device tree is larger than 2 MiB",
        })
    }
}

/// The plan for `vm`.
pub fn plan(vm: &VmSpec<'_>) -> Result<Plan, LoadError> {
    let ram_end = RAM_BASE.checked_add(vm.memory).filter(|&end| end <= RAM_LIMIT).ok_or(LoadError::MemoryTooLarge)?;
    let dtb = ram_end.checked_sub(DTB_SLOT).filter(|&d| d >= RAM_BASE).ok_or(LoadError::KernelDoesNotFit)?;
    let length = vm.kernel.len() as u64;
    let (kernel, entry, kernel_end) = match vm.kernel_kind {
        KernelKind::Image(header) => {
            const _: () = assert!(RAM_BASE.is_multiple_of(KERNEL_ALIGN));
            let kernel = RAM_BASE + header.text_offset;
            let end = kernel.checked_add(header.image_size).ok_or(LoadError::KernelDoesNotFit)?;
            (kernel, kernel, end)
        }
        KernelKind::Raw { load, entry } => {
            if load < RAM_BASE || load % 4 != 0 {
                return Err(LoadError::BadLoadAddress);
            }
            let end = load.checked_add(length).ok_or(LoadError::KernelDoesNotFit)?;
            if entry < load || entry >= end || entry % 4 != 0 {
                return Err(LoadError::BadLoadAddress);
            }
            (load, entry, end)
        }
    };
    if kernel_end > dtb {
        return Err(LoadError::KernelDoesNotFit);
    }
    let initrd = match vm.ramdisk {
        None => None,
        Some(data) => {
            let start = dtb.checked_sub(data.len() as u64).map(|s| s & !(PAGE - 1));
            match start {
                Some(start) if start >= kernel_end => Some(start),
                _ => return Err(LoadError::InitrdDoesNotFit),
            }
        }
    };
    if vm.fdt.is_some_and(|fdt| fdt.len() as u64 > DTB_SLOT) {
        return Err(LoadError::DeviceTreeTooLarge);
    }
    Ok(Plan { ram_end, kernel, entry, kernel_end, initrd, dtb })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bundle::image::ImageHeader;

    fn vm<'a>(kernel: &'a [u8], kind: KernelKind, memory: u64, ramdisk: Option<&'a [u8]>) -> VmSpec<'a> {
        VmSpec {
            name: "t".into(),
            vcpus: 1,
            memory,
            cpus: None,
            cmdline: String::new(),
            kernel,
            kernel_kind: kind,
            ramdisk,
            fdt: None,
            disk: None,
            console: bundle::ConsoleKind::Pl011,
            net: None,
        }
    }

    #[test]
    fn an_image_with_an_initrd() {
        let image = KernelKind::Image(ImageHeader { text_offset: 0x8_0000, image_size: 0x30_0000 });
        let initrd = [0u8; 0x1800];
        let plan = plan(&vm(&[0; 64], image, 16 << 20, Some(&initrd))).unwrap();
        assert_eq!(
            plan,
            Plan {
                ram_end: 0x4100_0000,
                kernel: 0x4008_0000,
                entry: 0x4008_0000,
                kernel_end: 0x4038_0000,
                initrd: Some(0x40e0_0000 - 0x2000),
                dtb: 0x40e0_0000,
            }
        );
    }

    #[test]
    fn what_does_not_fit() {
        let big = KernelKind::Image(ImageHeader { text_offset: 0, image_size: 0x40_0000 });
        assert_eq!(plan(&vm(&[0; 64], big, 4 << 20, None)), Err(LoadError::KernelDoesNotFit));
        assert!(plan(&vm(&[0; 64], big, 6 << 20, None)).is_ok());
        assert_eq!(plan(&vm(&[0; 64], big, 6 << 20, Some(&[1]))), Err(LoadError::InitrdDoesNotFit));
        assert_eq!(plan(&vm(&[0; 64], big, 2 << 20, None)), Err(LoadError::KernelDoesNotFit));
        assert_eq!(plan(&vm(&[0; 64], big, RAM_LIMIT, None)), Err(LoadError::MemoryTooLarge));
        let raw = |load, entry| KernelKind::Raw { load, entry };
        assert_eq!(plan(&vm(&[0; 8], raw(0x1000, 0x1000), 4 << 20, None)), Err(LoadError::BadLoadAddress));
        assert_eq!(plan(&vm(&[0; 8], raw(0x4000_0002, 0x4000_0002), 4 << 20, None)), Err(LoadError::BadLoadAddress));
        assert_eq!(plan(&vm(&[0; 8], raw(0x4000_0000, 0x4000_0008), 4 << 20, None)), Err(LoadError::BadLoadAddress));
        assert_eq!(plan(&vm(&[0; 8], raw(0x401f_fffc, 0x401f_fffc), 4 << 20, None)), Err(LoadError::KernelDoesNotFit));
        let ok = plan(&vm(&[0; 8], raw(0x4000_1000, 0x4000_1004), 4 << 20, None)).unwrap();
        assert_eq!((ok.kernel, ok.entry, ok.dtb), (0x4000_1000, 0x4000_1004, 0x4020_0000));
        let mut with_fdt = vm(&[0; 8], raw(0x4000_1000, 0x4000_1000), 4 << 20, None);
        let fdt = vec![0u8; (DTB_SLOT + 1) as usize];
        with_fdt.fdt = Some(&fdt);
        assert_eq!(plan(&with_fdt), Err(LoadError::DeviceTreeTooLarge));
    }
}
