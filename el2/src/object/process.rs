//! The syscall surface: Zircon's hypervisor calls on handle values, returning Zircon statuses.
//!
//! Every call validates its handles in Zircon's order (BAD_HANDLE, then WRONG_TYPE, then
//! ACCESS_DENIED for missing rights) before looking at its other arguments, except where the
//! seed or Zircon's kernel checks an argument first (noted at the call).

use super::guest::Guest;
use super::handle::{HandleTable, HANDLE_INVALID};
use super::packet::PortPacket;
use super::port::Port;
use super::resource::{Resource, RSRC_KIND_HYPERVISOR};
use super::trap::{TrapKind, BELFRY_GUEST_TRAP_BELL_WORDS, GUEST_TRAP_BELL, GUEST_TRAP_IO, GUEST_TRAP_MEM};
use super::vcpu::Vcpu;
use super::vmar::Vmar;
use super::vmo::Vmo;
use super::{Object, Rights, Status, ZxResult};
use crate::sync::Deadline;
use alloc::sync::Arc;

const PAGE_SIZE: u64 = super::frames::PAGE_SIZE;

/// A process: a handle table and the syscalls that act through it. The in-firmware VMM is
/// one process.
#[derive(Debug)]
pub struct Process {
    handles: HandleTable,
    /// Whether the CPU runs Belfry at EL2 (guests possible).
    virtualization: bool,
}

macro_rules! typed {
    ($self:ident, $value:expr, $variant:ident, $rights:expr) => {
        $self.handles.get_typed($value, $rights, |object| match object {
            Object::$variant(object) => Some(object),
            _ => None,
        })?
    };
}

/// Belfry's `zx_vmo_create` option: charge every page at creation (`NO_MEMORY` if the frames
/// are not there), so the VMO never fails a commit later. Guest RAM is created this way.
pub const BELFRY_VMO_CHARGED: u32 = 1 << 31;

impl Process {
    /// A process with an empty handle table.
    pub fn new(virtualization: bool) -> Self {
        Self { handles: HandleTable::new(), virtualization }
    }

    /// The handle table.
    pub fn handles(&self) -> &HandleTable {
        &self.handles
    }

    /// Boot-time: a resource of `kind` for this process.
    pub fn grant_resource(&self, kind: u32) -> ZxResult<u32> {
        self.handles.add(Object::Resource(Arc::new(Resource { kind })), Rights::DEFAULT_RESOURCE)
    }

    /// `zx_handle_close`.
    pub fn handle_close(&self, handle: u32) -> ZxResult {
        self.handles.close(handle)
    }

    /// `zx_handle_duplicate`.
    pub fn handle_duplicate(&self, handle: u32, rights: Rights) -> ZxResult<u32> {
        self.handles.duplicate(handle, rights)
    }

    /// `zx_vmo_create`: the only option is Belfry's [`BELFRY_VMO_CHARGED`] (others:
    /// INVALID_ARGS).
    pub fn vmo_create(&self, size: u64, options: u32) -> ZxResult<u32> {
        let vmo = match options {
            0 => Vmo::new(size)?,
            BELFRY_VMO_CHARGED => Vmo::new_charged(size)?,
            _ => return Err(Status::INVALID_ARGS),
        };
        self.handles.add(Object::Vmo(Arc::new(vmo)), Rights::DEFAULT_VMO)
    }

    /// `zx_vmo_write`.
    pub fn vmo_write(&self, vmo: u32, data: &[u8], offset: u64) -> ZxResult {
        let (vmo, _) = typed!(self, vmo, Vmo, Rights::WRITE);
        vmo.write(offset, data)
    }

    /// Belfry extension: copies `len` bytes from `source` at `source_offset` into `target` at
    /// `offset`, page to page, with no copy in between (a device moving data from one VM's
    /// memory into another's). `source` needs READ, `target` WRITE.
    pub fn vmo_transfer(&self, target: u32, offset: u64, source: u32, source_offset: u64, len: u64) -> ZxResult {
        let (target, _) = typed!(self, target, Vmo, Rights::WRITE);
        let (source, _) = typed!(self, source, Vmo, Rights::READ);
        target.copy_from(offset, &source, source_offset, len)
    }

    /// `zx_vmo_read`.
    pub fn vmo_read(&self, vmo: u32, buffer: &mut [u8], offset: u64) -> ZxResult {
        let (vmo, _) = typed!(self, vmo, Vmo, Rights::READ);
        vmo.read(offset, buffer)
    }

    /// `zx_vmar_map`.
    pub fn vmar_map(
        &self,
        vmar: u32,
        options: u32,
        vmar_offset: u64,
        vmo: u32,
        vmo_offset: u64,
        len: u64,
    ) -> ZxResult<u64> {
        let (vmar, vmar_rights) = typed!(self, vmar, Vmar, Rights::NONE);
        let (vmo, vmo_rights) = typed!(self, vmo, Vmo, Rights::NONE);
        vmar.map(vmar_rights, options, vmar_offset, vmo, vmo_rights, vmo_offset, len)
    }

    /// `zx_vmar_unmap`.
    pub fn vmar_unmap(&self, vmar: u32, addr: u64, len: u64) -> ZxResult {
        let (vmar, _) = typed!(self, vmar, Vmar, Rights::NONE);
        vmar.unmap(addr, len)
    }

    /// `zx_vmar_protect`.
    pub fn vmar_protect(&self, vmar: u32, options: u32, addr: u64, len: u64) -> ZxResult {
        let (vmar, rights) = typed!(self, vmar, Vmar, Rights::NONE);
        vmar.protect(rights, options, addr, len)
    }

    /// `zx_port_create`: options other than 0 are INVALID_ARGS.
    pub fn port_create(&self, options: u32) -> ZxResult<u32> {
        if options != 0 {
            return Err(Status::INVALID_ARGS);
        }
        self.handles.add(Object::Port(Arc::new(Port::new())), Rights::DEFAULT_PORT)
    }

    /// `zx_port_queue`: needs WRITE.
    pub fn port_queue(&self, port: u32, packet: &PortPacket) -> ZxResult {
        let (port, _) = typed!(self, port, Port, Rights::WRITE);
        port.queue_user(*packet)
    }

    /// `zx_port_wait`: needs READ.
    pub fn port_wait(&self, port: u32, deadline: Deadline) -> ZxResult<PortPacket> {
        let (port, _) = typed!(self, port, Port, Rights::READ);
        port.wait(deadline)
    }

    /// `zx_guest_create`: returns the guest handle and its guest-physical VMAR handle.
    pub fn guest_create(&self, resource: u32, options: u32) -> ZxResult<(u32, u32)> {
        // Zircon checks the options before the resource.
        if options != 0 {
            return Err(Status::INVALID_ARGS);
        }
        let handle = self.handles.get(resource)?;
        let Object::Resource(resource) = handle.object else {
            return Err(Status::WRONG_TYPE);
        };
        if resource.kind != RSRC_KIND_HYPERVISOR {
            return Err(Status::ACCESS_DENIED);
        }
        if !self.virtualization {
            return Err(Status::NOT_SUPPORTED);
        }
        let guest = Arc::new(Guest::new()?);
        let vmar = guest.vmar().clone();
        let guest_handle = self.handles.add(Object::Guest(guest), Rights::DEFAULT_GUEST)?;
        match self.handles.add(Object::Vmar(vmar), Rights::GUEST_VMAR) {
            Ok(vmar_handle) => Ok((guest_handle, vmar_handle)),
            Err(status) => {
                let _ = self.handles.close(guest_handle);
                Err(status)
            }
        }
    }

    /// `zx_guest_set_trap`.
    pub fn guest_set_trap(&self, guest: u32, kind: u32, addr: u64, size: u64, port: u32, key: u64) -> ZxResult {
        let (guest, _) = typed!(self, guest, Guest, Rights::WRITE);
        if kind == BELFRY_GUEST_TRAP_BELL_WORDS {
            if port == HANDLE_INVALID {
                return Err(Status::INVALID_ARGS);
            }
            let (port, _) = typed!(self, port, Port, Rights::WRITE);
            return guest.set_bell_words(addr, size, port, key);
        }
        let kind = match kind {
            GUEST_TRAP_BELL => TrapKind::Bell,
            GUEST_TRAP_MEM => TrapKind::Mem,
            // No port-I/O space on aarch64, as in Zircon's arm64 kernel.
            GUEST_TRAP_IO => return Err(Status::NOT_SUPPORTED),
            _ => return Err(Status::INVALID_ARGS),
        };
        if !addr.is_multiple_of(PAGE_SIZE) || !size.is_multiple_of(PAGE_SIZE) {
            return Err(Status::INVALID_ARGS);
        }
        let port = match (kind, port) {
            (TrapKind::Mem, HANDLE_INVALID) => None,
            (TrapKind::Mem, _) | (TrapKind::Bell, HANDLE_INVALID) => return Err(Status::INVALID_ARGS),
            (TrapKind::Bell, port) => Some(typed!(self, port, Port, Rights::WRITE).0),
        };
        guest.set_trap(kind, addr, size, port, key)
    }

    /// `zx_vcpu_create`: the guest handle needs MANAGE_PROCESS (DESIGN.md 2.3).
    pub fn vcpu_create(&self, guest: u32, options: u32, entry: u64) -> ZxResult<u32> {
        let (guest, _) = typed!(self, guest, Guest, Rights::MANAGE_PROCESS);
        if options != 0 {
            return Err(Status::INVALID_ARGS);
        }
        let vcpu = Vcpu::new(guest, entry)?;
        self.handles.add(Object::Vcpu(Arc::new(vcpu)), Rights::DEFAULT_VCPU)
    }

    /// `zx_vcpu_enter`: needs EXECUTE.
    pub fn vcpu_enter(&self, vcpu: u32) -> ZxResult<PortPacket> {
        let mut packet = PortPacket::default();
        self.vcpu_enter_into(vcpu, &mut packet).map(|()| packet)
    }

    /// [`Process::vcpu_enter`] writing the packet into `out` (see [`Vcpu::enter_into`]).
    pub fn vcpu_enter_into(&self, vcpu: u32, out: &mut PortPacket) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::EXECUTE);
        vcpu.enter_into(out)
    }

    /// Belfry extension: [`Process::vcpu_write_state`] of one register
    /// (`BELFRY_VCPU_REGISTER`) and [`Process::vcpu_enter_into`] as one call (see
    /// [`Vcpu::enter_with_register`]): needs WRITE and EXECUTE.
    pub fn vcpu_enter_with_register_into(&self, vcpu: u32, index: u8, value: u64, out: &mut PortPacket) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::EXECUTE | Rights::WRITE);
        vcpu.enter_with_register(index, value, out)
    }

    /// `zx_vcpu_kick`: needs EXECUTE.
    pub fn vcpu_kick(&self, vcpu: u32) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::EXECUTE);
        vcpu.kick();
        Ok(())
    }

    /// `zx_vcpu_interrupt`: needs SIGNAL.
    pub fn vcpu_interrupt(&self, vcpu: u32, vector: u32) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::SIGNAL);
        vcpu.interrupt(vector)
    }

    /// Belfry extension: SGI `vector` from VCPU `source` (GICv2: the guest reads the source
    /// with it); needs SIGNAL, as `zx_vcpu_interrupt`.
    pub fn vcpu_interrupt_sgi(&self, vcpu: u32, vector: u32, source: u8) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::SIGNAL);
        vcpu.interrupt_sgi(vector, source)
    }

    /// Belfry extension: the delivery priority of `vector` on this VCPU; needs SIGNAL, as
    /// `zx_vcpu_interrupt`.
    pub fn vcpu_set_interrupt_priority(&self, vcpu: u32, vector: u32, priority: u8) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::SIGNAL);
        vcpu.set_interrupt_priority(vector, priority)
    }

    /// `zx_vcpu_read_state`: needs READ.
    pub fn vcpu_read_state(&self, vcpu: u32, kind: u32, buffer: &mut [u8]) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::READ);
        vcpu.read_state(kind, buffer)
    }

    /// `zx_vcpu_write_state`: needs WRITE.
    pub fn vcpu_write_state(&self, vcpu: u32, kind: u32, buffer: &[u8]) -> ZxResult {
        let (vcpu, _) = typed!(self, vcpu, Vcpu, Rights::WRITE);
        vcpu.write_state(kind, buffer)
    }

    /// The VCPU object behind a handle (for the VMM library and tests).
    pub fn vcpu_object(&self, vcpu: u32) -> ZxResult<Arc<Vcpu>> {
        Ok(typed!(self, vcpu, Vcpu, Rights::NONE).0)
    }

    /// The port object behind a handle.
    pub fn port_object(&self, port: u32) -> ZxResult<Arc<Port>> {
        Ok(typed!(self, port, Port, Rights::NONE).0)
    }

    /// The VMAR object behind a handle.
    pub fn vmar_object(&self, vmar: u32) -> ZxResult<Arc<Vmar>> {
        Ok(typed!(self, vmar, Vmar, Rights::NONE).0)
    }
}
