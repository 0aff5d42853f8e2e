//! mcufit-export
