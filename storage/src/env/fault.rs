//! (under construction)
use super::*;
#[derive(Debug, Default, Clone)]
pub struct FaultInjectingFs;
#[derive(Debug, Default, Clone)]
pub struct FaultPlan;
