//! The arm64 Linux `Image` header (Documentation/arch/arm64/booting.rst): 64 bytes at the start
//! of the file, little-endian: `code0`, `code1`, `text_offset`, `image_size`, `flags`, three
//! reserved words, the magic `ARM\x64` at byte 56.

/// The magic at byte 56.
pub const MAGIC: [u8; 4] = *b"ARM\x64";
/// Bytes of the header.
pub const HEADER_SIZE: usize = 64;
/// `text_offset` a loader assumes when `image_size` is zero (kernels before 3.17).
pub const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;

/// What the header says about loading the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ImageHeader {
    /// Bytes from a 2 MiB-aligned base to where the image is placed.
    pub text_offset: u64,
    /// Bytes the kernel occupies once running (file plus bss and early tables), from the image
    /// start; at least the file's length.
    pub image_size: u64,
}

/// Why an `Image` header is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderError {
    /// No `ARM\x64` magic: not an arm64 Image.
    NoMagic,
    /// Flags say big-endian, or a page size Belfry's stage 2 cannot give (bits 1-2 are 2 or 3
    /// means 16 KiB or 64 KiB: fine; bit 0 set means big-endian: refused).
    BigEndian,
    /// `text_offset` is not a multiple of 4 KiB or not below 2 MiB.
    BadTextOffset,
    /// `image_size` is smaller than the file.
    BadImageSize,
}

fn le64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

/// Whether `data` starts with an arm64 Image header.
pub fn is_image(data: &[u8]) -> bool {
    data.len() >= HEADER_SIZE && data[56..60] == MAGIC
}

/// Parses the header of `data`, a whole Image file.
pub fn parse(data: &[u8]) -> Result<ImageHeader, HeaderError> {
    if !is_image(data) {
        return Err(HeaderError::NoMagic);
    }
    let (text_offset, image_size, flags) = (le64(data, 8), le64(data, 16), le64(data, 24));
    if image_size == 0 {
        return Ok(ImageHeader { text_offset: LEGACY_TEXT_OFFSET, image_size: data.len() as u64 });
    }
    if flags & 1 != 0 {
        return Err(HeaderError::BigEndian);
    }
    if text_offset % 0x1000 != 0 || text_offset >= 0x20_0000 {
        return Err(HeaderError::BadTextOffset);
    }
    if image_size < data.len() as u64 {
        return Err(HeaderError::BadImageSize);
    }
    Ok(ImageHeader { text_offset, image_size })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn header(text_offset: u64, image_size: u64, flags: u64) -> [u8; 64] {
        let mut h = [0u8; 64];
        h[8..16].copy_from_slice(&text_offset.to_le_bytes());
        h[16..24].copy_from_slice(&image_size.to_le_bytes());
        h[24..32].copy_from_slice(&flags.to_le_bytes());
        h[56..60].copy_from_slice(&MAGIC);
        h
    }

    #[test]
    fn headers() {
        assert_eq!(parse(&header(0, 0x10_0000, 2)), Ok(ImageHeader { text_offset: 0, image_size: 0x10_0000 }));
        assert_eq!(parse(&header(0x8_0000, 64, 0xa)), Ok(ImageHeader { text_offset: 0x8_0000, image_size: 64 }));
        assert_eq!(parse(&header(5, 0, 0)), Ok(ImageHeader { text_offset: LEGACY_TEXT_OFFSET, image_size: 64 }));
        assert_eq!(parse(&header(0, 64, 1)), Err(HeaderError::BigEndian));
        assert_eq!(parse(&header(0x800, 64, 0)), Err(HeaderError::BadTextOffset));
        assert_eq!(parse(&header(0x20_0000, 64, 0)), Err(HeaderError::BadTextOffset));
        assert_eq!(parse(&header(0, 63, 0)), Err(HeaderError::BadImageSize));
        assert_eq!(parse(&[0; 64]), Err(HeaderError::NoMagic));
        assert_eq!(parse(&header(0, 64, 0)[..60]), Err(HeaderError::NoMagic));
    }
}
