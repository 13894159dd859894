//! Kernel profiles: what a restoring host offers that an image depends on (spec §6.1).

use crate::bytes::{Blob, ByteString};
use crate::record::header::SpecialMapping;
use serde::{Deserialize, Serialize};

/// The `format` value of every profile.
pub const PROFILE_FORMAT: &str = "crak-kernel-profile/1";

/// Where one XSAVE component lives in the standard-format area (`CPUID.(EAX=0xD, ECX=i)`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct XsaveComponent {
    /// Component number (bit of XCR0), 2..=62.
    pub index: u32,
    /// Offset in the standard-format area.
    pub offset: u32,
    /// Size in bytes.
    pub size: u32,
}

/// An exported function of a vDSO image.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdsoSymbol {
    /// Symbol name (`__vdso_clock_gettime`, `clock_gettime`, ...).
    pub name: String,
    /// Offset of the entry point from the start of the vDSO mapping.
    pub offset: u64,
    /// Length of the function in bytes (its `st_size`; 0: unknown, up to the next function).
    #[serde(default)]
    pub size: u64,
}

/// One host as a restore target or as a capture source (spec §6.1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelProfile {
    /// [`PROFILE_FORMAT`].
    pub format: String,
    /// `uname -r`.
    pub kernel_release: ByteString,
    /// Bytes per page.
    pub page_size: u32,
    /// XCR0: the XSAVE components the OS enabled.
    pub xsave_features: u64,
    /// Size of the standard-format XSAVE area for `xsave_features`.
    pub xsave_size: u32,
    /// Placement of each enabled component ≥ 2.
    pub xsave_components: Vec<XsaveComponent>,
    /// The vDSO/vvar/vsyscall mappings of the process that wrote the profile.
    pub special_mappings: Vec<SpecialMapping>,
    /// The bytes of the `[vdso]` mapping, if known.
    pub vdso: Option<Blob<'static>>,
    /// The vDSO's exported functions.
    pub vdso_symbols: Vec<VdsoSymbol>,
}

impl KernelProfile {
    /// The component `index`, if the profile lists it.
    pub fn component(&self, index: u32) -> Option<XsaveComponent> {
        self.xsave_components
            .iter()
            .copied()
            .find(|c| c.index == index)
    }

    /// Parses the JSON form, checking `format`.
    pub fn from_json(text: &str) -> Result<KernelProfile, String> {
        let p: KernelProfile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if p.format != PROFILE_FORMAT {
            return Err(format!("format {:?} is not {PROFILE_FORMAT:?}", p.format));
        }
        Ok(p)
    }
}

/// Names of the XSAVE components (Intel SDM vol. 1 §13.1).
pub fn component_name(index: u32) -> &'static str {
    match index {
        0 => "x87",
        1 => "SSE",
        2 => "AVX (YMM_Hi128)",
        3 => "MPX BNDREGS",
        4 => "MPX BNDCSR",
        5 => "AVX-512 opmask",
        6 => "AVX-512 ZMM_Hi256",
        7 => "AVX-512 Hi16_ZMM",
        8 => "PT",
        9 => "PKRU",
        10 => "PASID",
        11 => "CET_U",
        12 => "CET_S",
        13 => "HDC",
        14 => "UINTR",
        15 => "LBR",
        16 => "HWP",
        17 => "AMX TILECFG",
        18 => "AMX TILEDATA",
        19 => "APX",
        _ => "unknown component",
    }
}
