//! Image-folder importer: one sub-folder per class, PNG or JPEG files inside.

use std::fs;
use std::path::{Path, PathBuf};

use perun_core::{Digest, DigestWriter};

use super::Dataset;
use crate::SealError;

/// Imports `root/<class>/<image>` files. Classes are the sub-folder names in sorted
/// order; images are decoded with the `image` crate to `channels` (1 or 3) and, when
/// `resize` is given, resized to that `(width, height)`; otherwise every image must
/// have the size of the first. Features are `[channels, height, width]` in `0.0..=1.0`.
/// Hidden files are skipped; any other non-image file is an error that names it.
pub fn import_image_folder(root: &Path, resize: Option<(u32, u32)>, channels: u8) -> Result<Dataset, SealError> {
    if channels != 1 && channels != 3 {
        return Err(SealError::Image {
            path: root.to_owned(),
            why: format!("channels must be 1 or 3, not {channels}"),
        });
    }
    let classes = sorted_entries(root, |p| p.is_dir())?;
    if classes.is_empty() {
        return Err(SealError::Image {
            path: root.to_owned(),
            why: "no class folders found (expected one sub-folder per class)".into(),
        });
    }
    let mut class_names = Vec::new();
    let mut features = Vec::new();
    let mut labels = Vec::new();
    let mut size: Option<(u32, u32)> = resize;
    let mut source = DigestWriter::new();
    if classes.len() > super::MAX_CLASSES {
        return Err(SealError::Image {
            path: root.to_owned(),
            why: format!("{} class folders, more than {}", classes.len(), super::MAX_CLASSES),
        });
    }
    for (ci, class_dir) in classes.iter().enumerate() {
        let Some(name) = class_dir.file_name().and_then(|n| n.to_str()) else {
            return Err(SealError::Image {
                path: class_dir.clone(),
                why: "the class folder's name is not UTF-8: rename it (class names are text)".into(),
            });
        };
        class_names.push(name.to_owned());
        for file in sorted_entries(class_dir, |p| p.is_file())? {
            let ext = file.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
            if !matches!(ext.as_deref(), Some("png" | "jpg" | "jpeg")) {
                return Err(SealError::Image { path: file, why: "not a .png, .jpg or .jpeg file".into() });
            }
            let bytes = fs::read(&file).map_err(|e| SealError::io(&file, e))?;
            source.update(file_name(class_dir).as_bytes());
            source.update(file_name(&file).as_bytes());
            source.update(Digest::of(&bytes).as_bytes());
            let img = image::load_from_memory(&bytes)
                .map_err(|e| SealError::Image { path: file.clone(), why: format!("cannot decode: {e}") })?;
            let img = match resize {
                Some((w, h)) => img.resize_exact(w, h, image::imageops::FilterType::Triangle),
                None => img,
            };
            let (w, h) = (img.width(), img.height());
            match size {
                None => size = Some((w, h)),
                Some(s) if s != (w, h) => {
                    return Err(SealError::Image {
                        path: file,
                        why: format!("is {w}x{h} but earlier images are {}x{}; pass --resize WxH", s.0, s.1),
                    })
                }
                Some(_) => {}
            }
            push_chw(&img, channels, &mut features);
            labels.push(ci as i64);
        }
    }
    let (w, h) = size.ok_or_else(|| SealError::Image { path: root.to_owned(), why: "no images found".into() })?;
    let shape = vec![usize::from(channels), h as usize, w as usize];
    Dataset::new(features, shape, labels, class_names, Vec::new(), Some(source.finish()))
}

/// Appends the image as `[channels, height, width]` values in `0.0..=1.0`, converted
/// from its own depth (8- or 16-bit, or float) without passing through 8 bits.
fn push_chw(img: &image::DynamicImage, channels: u8, out: &mut Vec<f32>) {
    if channels == 1 {
        out.extend(img.to_luma32f().pixels().map(|p| p.0[0]));
    } else {
        let rgb = img.to_rgb32f();
        for c in 0..3 {
            out.extend(rgb.pixels().map(|p| p.0[c]));
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>, SealError> {
    let mut v = Vec::new();
    for e in fs::read_dir(dir).map_err(|e| SealError::io(dir, e))? {
        let p = e.map_err(|e| SealError::io(dir, e))?.path();
        if !file_name(&p).starts_with('.') && keep(&p) {
            v.push(p);
        }
    }
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32, v: u8) {
        image::RgbImage::from_pixel(w, h, image::Rgb([v, 0, 255])).save(path).unwrap();
    }

    #[test]
    fn folders_become_classes() {
        let dir = tempfile::tempdir().unwrap();
        for (class, v) in [("cat", 10u8), ("dog", 200)] {
            fs::create_dir(dir.path().join(class)).unwrap();
            write_png(&dir.path().join(class).join("1.png"), 4, 2, v);
            write_png(&dir.path().join(class).join("2.PNG"), 4, 2, v);
        }
        let d = import_image_folder(dir.path(), None, 3).unwrap();
        assert_eq!(d.class_names, ["cat", "dog"]);
        assert_eq!(d.labels, [0, 0, 1, 1]);
        assert_eq!(d.sample_shape, [3, 2, 4]);
        assert!((d.features[0] - 10.0 / 255.0).abs() < 1e-6);
        assert_eq!(d.features[8], 0.0); // green plane
        let g = import_image_folder(dir.path(), Some((2, 2)), 1).unwrap();
        assert_eq!(g.sample_shape, [1, 2, 2]);
    }

    #[test]
    fn sixteen_bit_images_keep_their_precision() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("x")).unwrap();
        // 25701 = 100.0039 * 257: between two 8-bit levels, so 8 bits would round it.
        image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_pixel(2, 2, image::Luma([25701]))
            .save(dir.path().join("x").join("a.png"))
            .unwrap();
        let d = import_image_folder(dir.path(), None, 1).unwrap();
        assert!((d.features[0] - 25701.0 / 65535.0).abs() < 1e-7, "{}", d.features[0]);
        assert!((d.features[0] - 100.0 / 255.0).abs() > 1e-6, "scaled through 8 bits");
    }

    #[test]
    fn bad_images_are_named() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("a")).unwrap();
        write_png(&dir.path().join("a").join("1.png"), 4, 4, 1);
        write_png(&dir.path().join("a").join("2.png"), 5, 4, 1);
        let e = import_image_folder(dir.path(), None, 3).unwrap_err().to_string();
        assert!(e.contains("2.png") && e.contains("--resize"), "{e}");
        assert!(import_image_folder(dir.path(), Some((4, 4)), 3).is_ok());
        fs::write(dir.path().join("a").join("3.png"), b"not a png").unwrap();
        let e = import_image_folder(dir.path(), Some((4, 4)), 3).unwrap_err().to_string();
        assert!(e.contains("3.png") && e.contains("cannot decode"), "{e}");
    }
}
