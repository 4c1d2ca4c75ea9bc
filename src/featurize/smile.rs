//! openSMILE's C API (`SMILEapi.h`), loaded at run time, driven the way the Python package
//! `opensmile` 2.6.0 drives it, so the two give the same vectors.
//!
//! One openSMILE instance per file: `smile_new` → `smile_initialize` (the ComParE_2016
//! configuration with the external audio source and sink, the same options Python passes) →
//! `smile_extsink_set_data_callback` → `smile_extaudiosource_write_data` (the whole file as
//! 16-bit PCM) → `smile_extaudiosource_set_external_eoi` → `smile_run` → `smile_free`. The
//! sink calls back once with the utterance's functionals.
//!
//! Instances on different threads run fully in parallel, initialisation included, as the Python
//! package runs them with `num_workers > 1` (audinterface's thread pool). Measured before this
//! was decided (2026-12-04, 120 files, 2 cores): a lock around `smile_initialize`/`smile_free`
//! cost 3.5–9 % at 2 threads (2.46 vs 2.55 s and 2.66 vs 2.92 s on 120 files) (initialisation is ~24 ms of a 63 ms file), and 360 unlocked
//! initialisations on 8 threads gave byte-identical vectors; `tests/featurize_audio.rs` compares
//! 1 and 2 threads byte for byte on every `make test`.

use std::ffi::{c_char, c_int, c_long, c_void, CStr, CString};
use std::path::Path;
use std::sync::Arc;

use super::error::{FeaturizeError, FileProblem};
use super::library::{Installation, COMPARE_CONFIG};
use super::COMPARE_DIMS;

const SMILE_SUCCESS: c_int = 0;
/// The configuration's external source and sink component names (Python's `config.py`).
const SOURCE: &CStr = c"extsource";
const SINK: &CStr = c"extsink";
/// openSMILE's log level as Python sets it by default (2), with console output off.
const LOG_LEVEL: c_int = 2;

type SinkCallback = unsafe extern "C" fn(data: *const f32, len: c_long, param: *mut c_void) -> c_int;

/// The C functions used, resolved once from the library.
struct Api {
    new: unsafe extern "C" fn() -> *mut c_void,
    #[allow(clippy::type_complexity)]
    initialize: unsafe extern "C" fn(
        *mut c_void,
        *const c_char,
        c_int,
        *const *const c_char,
        c_int,
        c_int,
        c_int,
        *const c_char,
    ) -> c_int,
    run: unsafe extern "C" fn(*mut c_void) -> c_int,
    free: unsafe extern "C" fn(*mut c_void),
    audio_write: unsafe extern "C" fn(*mut c_void, *const c_char, *const c_void, c_int) -> c_int,
    audio_eoi: unsafe extern "C" fn(*mut c_void, *const c_char) -> c_int,
    set_sink_callback: unsafe extern "C" fn(*mut c_void, *const c_char, SinkCallback, *mut c_void) -> c_int,
    sink_elements: unsafe extern "C" fn(*mut c_void, *const c_char, *mut c_long) -> c_int,
    sink_element_name: unsafe extern "C" fn(*mut c_void, *const c_char, c_long, *mut *const c_char) -> c_int,
    error_msg: unsafe extern "C" fn(*mut c_void) -> *const c_char,
    /// Keeps the code the pointers above point into mapped; declared last so it is dropped last.
    _library: libloading::Library,
}

// SAFETY: the struct holds plain C function pointers into a library that stays loaded for
// its lifetime; each openSMILE object is used by one thread at a time (see the module doc).
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

impl Api {
    fn load(path: &Path) -> Result<Api, FeaturizeError> {
        let load_error =
            |e: libloading::Error| FeaturizeError::Load { path: path.to_path_buf(), reason: e.to_string() };
        // SAFETY: loading runs the library's initialisers; libSMILEapi's are plain C++ statics.
        let library = unsafe { libloading::Library::new(path.as_os_str()) }.map_err(load_error)?;
        macro_rules! symbol {
            ($name:literal) => {
                // SAFETY: the type is the function's signature in SMILEapi.h (as Python's ctypes
                // bindings in opensmile 2.6.0 declare it); the pointer lives as long as `library`.
                *unsafe { library.get($name) }.map_err(load_error)?
            };
        }
        Ok(Api {
            new: symbol!("smile_new"),
            initialize: symbol!("smile_initialize"),
            run: symbol!("smile_run"),
            free: symbol!("smile_free"),
            audio_write: symbol!("smile_extaudiosource_write_data"),
            audio_eoi: symbol!("smile_extaudiosource_set_external_eoi"),
            set_sink_callback: symbol!("smile_extsink_set_data_callback"),
            sink_elements: symbol!("smile_extsink_get_num_elements"),
            sink_element_name: symbol!("smile_extsink_get_element_name"),
            error_msg: symbol!("smile_error_msg"),
            _library: library,
        })
    }
}

/// Computes ComParE_2016 functionals; cheap to clone, usable from many threads at once.
#[derive(Clone)]
pub struct Extractor {
    api: Arc<Api>,
    /// `key, value, key, value, …` as openSMILE's command-line options (`\cm[...]`).
    options: Arc<Vec<CString>>,
    config: Arc<CString>,
    names: Arc<Vec<String>>,
}

impl std::fmt::Debug for Extractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Extractor")
            .field("config", &self.config)
            .field("features", &self.names.len())
            .finish()
    }
}

impl Extractor {
    /// Loads the library and reads the feature names from the configuration (which also
    /// proves the configuration loads).
    pub fn open(installation: &Installation) -> Result<Extractor, FeaturizeError> {
        let api = Arc::new(Api::load(&installation.library)?);
        let root = &installation.config_root;
        let c_path = |p: &Path| {
            CString::new(p.display().to_string()).map_err(|_| FeaturizeError::Invalid {
                path: p.to_path_buf(),
                reason: "path contains a NUL byte".into(),
            })
        };
        let config = Arc::new(c_path(&root.join(COMPARE_CONFIG))?);
        // The options Python's `Smile._options()` and `_extract()` pass, in its order.
        let mut options = Vec::new();
        for (key, value) in [
            ("sink", c_path(&root.join("shared/standard_external_data_output_single.conf.inc"))?),
            ("sinkLevel", c"func".to_owned()),
            ("bufferModeRbConf", c_path(&root.join("shared/BufferModeRb.conf.inc"))?),
            ("frameModeFunctionalsConf", c_path(&root.join("shared/FrameModeFunctionals.conf.inc"))?),
            ("source", c_path(&root.join("shared/standard_external_wave_input.conf.inc"))?),
            ("sampleRate", CString::new(super::SAMPLE_RATE.to_string()).expect("digits")),
            ("nBits", c"16".to_owned()),
        ] {
            options.push(CString::new(key).expect("literal"));
            options.push(value);
        }
        let mut extractor =
            Extractor { api, options: Arc::new(options), config, names: Arc::new(Vec::new()) };
        extractor.names = Arc::new(extractor.read_names()?);
        if extractor.names.len() != COMPARE_DIMS {
            return Err(FeaturizeError::Invalid {
                path: installation.config_root.join(COMPARE_CONFIG),
                reason: format!("gives {} features, expected {COMPARE_DIMS}", extractor.names.len()),
            });
        }
        Ok(extractor)
    }

    /// The feature names in output order (`audspec_lengthL1norm_sma_range`, …).
    pub fn feature_names(&self) -> &[String] {
        &self.names
    }

    /// The functionals of one utterance of 16-bit mono PCM at [`super::SAMPLE_RATE`].
    pub fn extract(&self, pcm: &[i16]) -> Result<Vec<f32>, FileProblem> {
        if pcm.is_empty() {
            return Err(FileProblem::Empty);
        }
        let bytes = c_int::try_from(pcm.len() * 2).map_err(|_| {
            FileProblem::Extractor(format!("{} samples is more than openSMILE takes at once", pcm.len()))
        })?;
        let instance = self.instance().map_err(|e| FileProblem::Extractor(e.to_string()))?;
        let mut frames: Vec<Vec<f32>> = Vec::new();
        let api = &self.api;
        let problem = |e: FeaturizeError| FileProblem::Extractor(e.to_string());
        // SAFETY: `frames` outlives the run (the callback is only called inside `smile_run`,
        // and the instance is freed before `frames` is read); the PCM buffer is read during
        // the write call only.
        unsafe {
            instance
                .check(
                    "smile_extsink_set_data_callback",
                    (api.set_sink_callback)(
                        instance.raw,
                        SINK.as_ptr(),
                        collect_frame,
                        (&mut frames as *mut Vec<Vec<f32>>).cast(),
                    ),
                )
                .map_err(problem)?;
            instance
                .check(
                    "smile_extaudiosource_write_data",
                    (api.audio_write)(instance.raw, SOURCE.as_ptr(), pcm.as_ptr().cast(), bytes),
                )
                .map_err(problem)?;
            instance
                .check(
                    "smile_extaudiosource_set_external_eoi",
                    (api.audio_eoi)(instance.raw, SOURCE.as_ptr()),
                )
                .map_err(problem)?;
            instance.check("smile_run", (api.run)(instance.raw)).map_err(problem)?;
        }
        drop(instance);
        let seconds = pcm.len() as f64 / super::SAMPLE_RATE as f64;
        let vector = match frames.len() {
            0 => return Err(FileProblem::TooShort { seconds }),
            1 => frames.pop().expect("one frame"),
            n => return Err(FileProblem::Extractor(format!("{n} functional vectors for one utterance"))),
        };
        if vector.len() != self.names.len() {
            return Err(FileProblem::WrongDims { got: vector.len(), expected: self.names.len() });
        }
        if let Some(index) = vector.iter().position(|v| !v.is_finite()) {
            return Err(FileProblem::NonFinite { index });
        }
        Ok(vector)
    }

    fn read_names(&self) -> Result<Vec<String>, FeaturizeError> {
        let instance = self.instance()?;
        let api = &self.api;
        let mut count: c_long = 0;
        // SAFETY: an initialised instance; the name pointers are owned by it and copied at once.
        unsafe {
            instance.check(
                "smile_extsink_get_num_elements",
                (api.sink_elements)(instance.raw, SINK.as_ptr(), &mut count),
            )?;
            (0..count)
                .map(|i| {
                    let mut name: *const c_char = std::ptr::null();
                    instance.check(
                        "smile_extsink_get_element_name",
                        (api.sink_element_name)(instance.raw, SINK.as_ptr(), i, &mut name),
                    )?;
                    Ok(if name.is_null() {
                        String::new()
                    } else {
                        CStr::from_ptr(name).to_string_lossy().into_owned()
                    })
                })
                .collect()
        }
    }

    /// A new instance with the configuration loaded.
    fn instance(&self) -> Result<Instance<'_>, FeaturizeError> {
        let api = &*self.api;
        // SAFETY: smile_new has no preconditions; a null result is checked.
        let raw = unsafe { (api.new)() };
        if raw.is_null() {
            return Err(FeaturizeError::Api { call: "smile_new", code: -1, message: "returned NULL".into() });
        }
        let pointers: Vec<*const c_char> =
            self.options.iter().map(|s| s.as_ptr()).chain(std::iter::once(std::ptr::null())).collect();
        let pairs = (self.options.len() / 2) as c_int;
        // SAFETY: every pointer is a NUL-terminated string alive for the call; no log file.
        let code = unsafe {
            (api.initialize)(
                raw,
                self.config.as_ptr(),
                pairs,
                pointers.as_ptr(),
                LOG_LEVEL,
                0,
                0,
                std::ptr::null(),
            )
        };
        if code != SMILE_SUCCESS {
            let message = error_message(api, raw);
            // SAFETY: freed once, here (no `Instance` owns it yet).
            unsafe { (api.free)(raw) };
            return Err(FeaturizeError::Api { call: "smile_initialize", code, message });
        }
        Ok(Instance { api, raw })
    }
}

/// openSMILE's message for the last failed call on `raw`.
fn error_message(api: &Api, raw: *mut c_void) -> String {
    // SAFETY: a live instance; the message is copied before anything else touches it.
    unsafe {
        let p = (api.error_msg)(raw);
        if p.is_null() {
            String::new()
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    }
}

/// The sink callback: copies one output frame into the `Vec<Vec<f32>>` behind `param`.
unsafe extern "C" fn collect_frame(data: *const f32, len: c_long, param: *mut c_void) -> c_int {
    if data.is_null() || param.is_null() || len < 0 {
        return 0;
    }
    // SAFETY: `param` is the `&mut Vec<Vec<f32>>` registered in `extract`, alive for the run;
    // openSMILE passes `len` valid floats.
    let frames = unsafe { &mut *param.cast::<Vec<Vec<f32>>>() };
    frames.push(unsafe { std::slice::from_raw_parts(data, len as usize) }.to_vec());
    1
}

/// One openSMILE object; freed on drop.
struct Instance<'a> {
    api: &'a Api,
    raw: *mut c_void,
}

impl Instance<'_> {
    /// Turns a return code into an error carrying openSMILE's own message.
    fn check(&self, call: &'static str, code: c_int) -> Result<(), FeaturizeError> {
        if code == SMILE_SUCCESS {
            return Ok(());
        }
        let message = error_message(self.api, self.raw);
        Err(FeaturizeError::Api { call, code, message })
    }
}

impl Drop for Instance<'_> {
    fn drop(&mut self) {
        // SAFETY: `raw` came from smile_new and is freed once.
        unsafe { (self.api.free)(self.raw) }
    }
}
