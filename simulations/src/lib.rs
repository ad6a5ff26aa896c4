//! Hansa's simulator: scenario files, partitions of real data into merchants, fault
//! plans, progress display and the business-value report of a simulated federation.
#![warn(missing_docs)]

pub mod faults;
pub mod partition;
pub mod report;
pub mod scenario;
