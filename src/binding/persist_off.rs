//! The persistent session store left out of the build (feature `persistence`
//! off): a client asked for one raises MqttError -2, and nothing else changes.
use super::client::*;
use crate::proto::rc;

/// Never made in this build.
pub enum Store {}

impl Client {
    pub(super) unsafe fn open_store(&mut self, _dir: super::ffi::Obj) -> ApiResult<()> {
        Err(ApiError::Mqtt(rc::PERSISTENCE_ERROR))
    }
    pub(super) fn store_publish(&mut self, _mid: u32) -> ApiResult<()> {
        Ok(())
    }
    pub(super) fn sync_changes(&mut self, _durable: bool) -> Result<(), ()> {
        Ok(())
    }
    pub(super) fn begin_delivery(&mut self, _pid: u16) {}
    pub(super) fn end_delivery(&mut self, _pid: u16) {}
    pub fn in_doubt(&self) -> bool {
        false
    }
    pub(super) fn close_store(&mut self) {}
}
