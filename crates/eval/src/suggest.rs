//! Suggested models from learned weights.
