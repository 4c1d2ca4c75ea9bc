//! Audio in: decoding (symphonia: WAV, FLAC, MP3), mono mixdown, resampling to the 16 kHz the
//! ComParE configuration is set up for (rubato), and the 16-bit PCM openSMILE is fed.
//!
//! The conversions are those of the Python reference, so a 16 kHz 16-bit mono WAV reaches
//! openSMILE sample for sample as it does from `opensmile.Smile.process_file`: samples are
//! decoded to floats (`s / 32768`), channels averaged, multiplied by 32768 and truncated
//! back to 16 bits. Other rates are resampled (FFT-based, band-limited); Python's
//! `resample=True` uses a different resampler, so vectors of resampled files agree with
//! Python's closely but not bit for bit (docs/audio.md).

use std::path::Path;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as DecodeError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::error::FileProblem;

/// One file, ready for openSMILE.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedAudio {
    /// Mono 16-bit PCM at [`super::SAMPLE_RATE`].
    pub pcm: Vec<i16>,
    /// Duration of the audio, seconds.
    pub seconds: f64,
    /// The file's own sample rate and channel count.
    pub source_rate: u32,
    pub source_channels: usize,
}

/// Decodes, mixes down, resamples and converts one file.
pub fn prepare_file(path: &Path) -> Result<PreparedAudio, FileProblem> {
    let decoded = decode_file(path)?;
    let mono = mixdown(&decoded.interleaved, decoded.channels);
    if mono.is_empty() {
        return Err(FileProblem::Empty);
    }
    let seconds = mono.len() as f64 / decoded.rate as f64;
    let at_rate = resample(&mono, decoded.rate, super::SAMPLE_RATE)?;
    Ok(PreparedAudio {
        pcm: to_pcm16(&at_rate),
        seconds,
        source_rate: decoded.rate,
        source_channels: decoded.channels,
    })
}

/// Interleaved float samples of a file's first audio track.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub interleaved: Vec<f32>,
    pub channels: usize,
    pub rate: u32,
}

/// Decodes the first audio track of `path`. Decoding stops at the end of the stream; a
/// packet that does not decode makes the file corrupt (a partial vector would describe
/// audio that is not the utterance).
pub fn decode_file(path: &Path) -> Result<Decoded, FileProblem> {
    let file = std::fs::File::open(path).map_err(|e| FileProblem::Unreadable(e.to_string()))?;
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    let probed = symphonia::default::get_probe()
        .format(&hint, stream, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| FileProblem::Unsupported(e.to_string()))?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| FileProblem::Unsupported("no audio track".into()))?;
    let track_id = track.id;
    let mut rate = track.codec_params.sample_rate.unwrap_or(0);
    let mut channels = track.codec_params.channels.map_or(0, |c| c.count());
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(|e| FileProblem::Unsupported(e.to_string()))?;
    let mut interleaved = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(DecodeError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(DecodeError::ResetRequired) => break,
            Err(e) => return Err(FileProblem::Corrupt(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let audio = decoder.decode(&packet).map_err(|e| FileProblem::Corrupt(e.to_string()))?;
        let spec = *audio.spec();
        if channels != 0 && spec.channels.count() != channels || rate != 0 && spec.rate != rate {
            return Err(FileProblem::Corrupt("the channel count or sample rate changes mid-stream".into()));
        }
        (channels, rate) = (spec.channels.count(), spec.rate);
        let samples = match &mut buffer {
            Some(b) if b.capacity() >= audio.capacity() * channels => b,
            slot => slot.insert(SampleBuffer::new(audio.capacity() as u64, spec)),
        };
        samples.copy_interleaved_ref(audio);
        interleaved.extend_from_slice(samples.samples());
    }
    if interleaved.is_empty() {
        return Err(FileProblem::Empty);
    }
    if rate == 0 || channels == 0 {
        return Err(FileProblem::Corrupt("no sample rate or channel count".into()));
    }
    Ok(Decoded { interleaved, channels, rate })
}

/// The mean over channels of interleaved samples (a mono signal is returned as is).
pub fn mixdown(interleaved: &[f32], channels: usize) -> Vec<f32> {
    if channels <= 1 {
        return interleaved.to_vec();
    }
    interleaved.chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32).collect()
}

/// Resamples a mono signal from `from` to `to` Hz; the same rate is returned unchanged. The
/// result has `round(len · to / from)` samples, aligned with the input (the resampler's
/// delay removed).
pub fn resample(input: &[f32], from: u32, to: u32) -> Result<Vec<f32>, FileProblem> {
    if from == to {
        return Ok(input.to_vec());
    }
    let failed = |e: &dyn std::fmt::Display| FileProblem::Resample { from, reason: e.to_string() };
    let mut resampler =
        FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| failed(&e))?;
    let delay = resampler.output_delay();
    let expected = ((input.len() as f64) * to as f64 / from as f64).round() as usize;
    let mut out = Vec::with_capacity(expected + delay + 2048);
    let mut pos = 0;
    while pos + resampler.input_frames_next() <= input.len() {
        let take = resampler.input_frames_next();
        let chunk = resampler.process(&[&input[pos..pos + take]], None).map_err(|e| failed(&e))?;
        out.extend_from_slice(&chunk[0]);
        pos += take;
    }
    if pos < input.len() {
        let chunk = resampler.process_partial(Some(&[&input[pos..]]), None).map_err(|e| failed(&e))?;
        out.extend_from_slice(&chunk[0]);
    }
    while out.len() < expected + delay {
        let chunk = resampler.process_partial::<&[f32]>(None, None).map_err(|e| failed(&e))?;
        if chunk[0].is_empty() {
            break;
        }
        out.extend_from_slice(&chunk[0]);
    }
    out.drain(..delay.min(out.len()));
    out.truncate(expected);
    Ok(out)
}

/// Float samples in [-1, 1) to 16-bit PCM as the Python reference does (`x · 32768`,
/// truncated; out-of-range values saturate instead of wrapping).
pub fn to_pcm16(samples: &[f32]) -> Vec<i16> {
    samples.iter().map(|&x| (x * 32768.0) as i16).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_bit_samples_survive_the_float_round_trip_exactly() {
        let pcm: Vec<i16> = vec![i16::MIN, -12345, -1, 0, 1, 777, i16::MAX];
        let floats: Vec<f32> = pcm.iter().map(|&s| s as f32 / 32768.0).collect();
        assert_eq!(to_pcm16(&floats), pcm);
        // Clipped input saturates rather than wrapping to the other sign.
        assert_eq!(to_pcm16(&[1.0, 1.5, -1.5]), [i16::MAX, i16::MAX, i16::MIN]);
    }

    #[test]
    fn mixdown_averages_frames() {
        assert_eq!(mixdown(&[0.5, -0.5, 1.0, 0.0], 2), [0.0, 0.5]);
        assert_eq!(mixdown(&[0.25, 0.75], 1), [0.25, 0.75]);
    }

    #[test]
    fn resampling_keeps_length_and_a_tone_in_phase() {
        let (from, to) = (22_050u32, 16_000u32);
        let tone = |rate: u32, n: usize| -> Vec<f32> {
            (0..n)
                .map(|i| (2.0 * std::f32::consts::PI * 440.0 * i as f32 / rate as f32).sin() * 0.5)
                .collect()
        };
        let input = tone(from, 22_050);
        let out = resample(&input, from, to).unwrap();
        assert_eq!(out.len(), 16_000);
        let expected = tone(to, 16_000);
        // Away from the edges the resampled tone is the tone at the new rate.
        let worst = out[500..15_500]
            .iter()
            .zip(&expected[500..15_500])
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 0.01, "max deviation {worst}");
        assert_eq!(resample(&input, from, from).unwrap(), input);
    }
}
