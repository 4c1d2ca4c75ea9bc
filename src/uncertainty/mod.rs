//! Pure uncertainty math.
