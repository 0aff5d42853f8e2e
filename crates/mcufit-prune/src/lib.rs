//! mcufit-prune
