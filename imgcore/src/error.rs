//! One error type for the whole crate, mapped once onto the Python exception hierarchy.

/// Every failure imgcore reports. The variants carry the PRODUCT.md error codes.
#[derive(Debug, thiserror::Error)]
pub enum ImgError {
    #[error("{0}")]
    UnsupportedFormat(String),
    #[error("{0}")]
    Corrupt(String),
    #[error("{0}")]
    TooLarge(String),
    /// A caller mistake (bad rendition spec, unknown output format): not the image's fault.
    #[error("{0}")]
    InvalidArgument(String),
    /// An encoder or colour-management failure on a valid image.
    #[error("{0}")]
    Internal(String),
}

impl ImgError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::UnsupportedFormat(_) => "unsupported_format",
            Self::Corrupt(_) => "corrupt_image",
            Self::TooLarge(_) => "image_too_large",
            Self::InvalidArgument(_) => "invalid_request",
            Self::Internal(_) => "internal",
        }
    }

    pub fn corrupt(msg: impl std::fmt::Display) -> Self {
        Self::Corrupt(format!("corrupt image: {msg}"))
    }
}

pub type Result<T> = std::result::Result<T, ImgError>;

#[cfg(feature = "python")]
pub mod py {
    use super::ImgError;
    use pyo3::exceptions::PyValueError;
    use pyo3::prelude::*;

    pyo3::create_exception!(
        _imgcore,
        ImageError,
        PyValueError,
        "Base of every image error."
    );
    pyo3::create_exception!(
        _imgcore,
        UnsupportedFormat,
        ImageError,
        "unsupported_format"
    );
    pyo3::create_exception!(_imgcore, CorruptImage, ImageError, "corrupt_image");
    pyo3::create_exception!(_imgcore, ImageTooLarge, ImageError, "image_too_large");

    /// Registers the exception classes, each carrying its error code as the `code` attribute.
    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        let classes = [
            (py.get_type::<ImageError>(), "internal"),
            (py.get_type::<UnsupportedFormat>(), "unsupported_format"),
            (py.get_type::<CorruptImage>(), "corrupt_image"),
            (py.get_type::<ImageTooLarge>(), "image_too_large"),
        ];
        for (cls, code) in classes {
            cls.setattr("code", code)?;
            m.add(cls.name()?, cls)?;
        }
        Ok(())
    }

    impl From<ImgError> for PyErr {
        fn from(err: ImgError) -> PyErr {
            let msg = err.to_string();
            match err {
                ImgError::UnsupportedFormat(_) => UnsupportedFormat::new_err(msg),
                ImgError::Corrupt(_) => CorruptImage::new_err(msg),
                ImgError::TooLarge(_) => ImageTooLarge::new_err(msg),
                ImgError::InvalidArgument(_) => PyValueError::new_err(msg),
                ImgError::Internal(_) => ImageError::new_err(msg),
            }
        }
    }
}
