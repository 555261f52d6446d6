"""Audio helpers on numpy int16 arrays: WAV files, resampling, generated tones."""
