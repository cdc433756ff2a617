//! `cargo xtask flash`: a complete Raspberry Pi 4 boot folder on a machine without the Pi
//! firmware installed (it is fetched from Debian's raspi-firmware package), and an SD-card
//! image whose FAT32 partition lists the same files.

use std::path::Path;

#[test]
fn flash_writes_a_complete_boot_folder_and_an_sd_card_image() {
    let dir = xtask::workspace_root().join("target/test-flash");
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("boot");
    let image = dir.join("sd.img");
    let written = xtask::flash::flash(&out, None, Some(&image), Path::new("/nonexistent/raspi-firmware")).unwrap();
    let mut expected: Vec<&str> =
        xtask::flash::BELFRY_FILES.iter().chain(&xtask::flash::FIRMWARE_FILES).copied().collect();
    expected.sort();
    let mut in_folder: Vec<String> =
        std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    in_folder.sort();
    assert_eq!(in_folder, expected);
    assert_eq!(written.len(), expected.len() + 1, "the folder's files and the image");
    let config = std::fs::read_to_string(out.join("config.txt")).unwrap();
    assert!(config.lines().any(|l| l == "initramfs belfry.itb followkernel"), "{config}");
    // The bundle in the folder is one Belfry accepts.
    assert_eq!(xtask::pack::check(&std::fs::read(out.join("belfry.itb")).unwrap()).unwrap().len(), 2);
    // start4.elf is the GPU firmware: an ELF for the VideoCore.
    assert_eq!(&std::fs::read(out.join("start4.elf")).unwrap()[..4], b"\x7fELF");
    let mut listed = xtask::flash::list_image(&image).unwrap();
    listed.sort();
    let sizes: Vec<(String, u64)> =
        expected.iter().map(|name| (name.to_string(), std::fs::metadata(out.join(name)).unwrap().len())).collect();
    assert_eq!(listed, sizes);
}
