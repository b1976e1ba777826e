"""Text masking that runs before anything stores, logs or sends a transcript: spoken and
written numbers found (`spoken_numbers`), masked (`masking`). Pure functions of text with no
dependency on the rest of CallCue, so the log formatter and every layer above may use them."""
