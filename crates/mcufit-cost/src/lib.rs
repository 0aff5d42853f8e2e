//! mcufit-cost
