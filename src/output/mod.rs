//! Match output: JSON Lines and text.
