//! Guest bundles: whatever bytes the board's loader passes as the initrd, parsing them as a FIT
//! and planning each VM's guest-physical layout ends in a bundle, a refusal or a refused VM,
//! never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(bundle) = bundle::parse(data) {
        for entry in &bundle.entries {
            if let Ok(vm) = &entry.vm {
                let _ = vmm::loader::plan(vm);
            }
        }
    }
});
