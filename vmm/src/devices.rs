//! A VM's virtio devices at run time: each one a [`Virtio`] in a slot of the layout, its
//! registers on the bus (served on the VCPUs' threads through the slot page's MEM trap), its
//! QueueNotify word a doorbell ([`el2::object::trap::BELFRY_GUEST_TRAP_BELL_WORDS`]) whose BELL
//! packets wake the device's own thread through its port, and its interrupt line a level SPI
//! of the VM's distributor.
//!
//! The device thread serves the queues ([`crate::virtio_blk`], [`crate::virtio_console`],
//! [`crate::virtio_net`]) over [`GuestRam`], the VM's RAM through its VMO's checked accessors:
//! an address outside the VM's RAM (another VM's memory, an MMIO window, past the end) is a
//! [`crate::virtqueue::QueueError`], never an access. A device whose driver breaks the queue
//! rules goes to DEVICE_NEEDS_RESET and the VM's log says so once, naming the VM and the
//! device; nothing else is affected.
//!
//! Locks: a device's `transport` is a leaf (never held while taking another device's), its
//! `backend` is taken only by its own thread (and, for the console, by keystroke delivery),
//! before its transport, and never by a VCPU thread (which holds its bus slot while it serves
//! a register access: a thread raising a peer's line takes that slot while holding its own
//! backend). A link's frame moves with the sender's transport released.

use crate::bus::Device;
use crate::layout::RAM_BASE;
use crate::pl011::Output;
use crate::virtio_blk::{Blk, DiskError, Overlay, Store};
use crate::virtio_console::Console;
use crate::virtio_mmio::{Event, Transport};
use crate::virtio_net::{self, Delivery, Outgoing, Taken};
use crate::virtqueue::{Memory, OutsideRam, QueueError};
use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};
use el2::api::{Port, Vmo};

/// User-packet keys on a device's port: look at the queues (keystrokes, a peer's buffers, the
/// driver's DRIVER_OK), or end the thread.
pub const KICK: u64 = 0x6b1c;
pub const STOP: u64 = 0x5709;

/// The VM's RAM as a device sees it: guest-physical addresses, checked against the RAM's
/// bounds, reached through the VMO.
pub struct GuestRam<'a> {
    pub vmo: &'a Vmo<'static>,
    pub size: u64,
}

impl GuestRam<'_> {
    /// The VMO offset of guest-physical `[address, address + len)`, if it is all RAM.
    pub fn offset(&self, address: u64, len: usize) -> Result<u64, OutsideRam> {
        let offset = address.checked_sub(RAM_BASE).ok_or(OutsideRam)?;
        let end = offset.checked_add(len as u64).ok_or(OutsideRam)?;
        if end > self.size {
            return Err(OutsideRam);
        }
        Ok(offset)
    }
}

impl Memory for GuestRam<'_> {
    fn read(&self, address: u64, out: &mut [u8]) -> Result<(), OutsideRam> {
        let offset = self.offset(address, out.len())?;
        self.vmo.read(offset, out).map_err(|_| OutsideRam)
    }

    fn write(&mut self, address: u64, data: &[u8]) -> Result<(), OutsideRam> {
        let offset = self.offset(address, data.len())?;
        self.vmo.write(offset, data).map_err(|_| OutsideRam)
    }
}

/// The disk overlay's store: a VMO charged to the VM.
pub struct VmoStore(pub Vmo<'static>);

impl Store for VmoStore {
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), DiskError> {
        self.0.read(offset, out).map_err(|_| DiskError)
    }

    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), DiskError> {
        self.0.write(offset, data).map_err(|_| DiskError)
    }
}

/// The other end of a link: its card and its VM's RAM.
#[derive(Clone)]
pub struct Peer {
    pub device: Arc<Virtio>,
    pub ram: Arc<Vmo<'static>>,
    pub size: u64,
}

/// What serves a device's queues.
pub enum Backend {
    Blk(Blk<Overlay<VmoStore>>),
    Console(Console),
    /// A network card, and the frame it took and could not deliver yet.
    Net(Option<Outgoing>),
}

/// One virtio device of a VM.
pub struct Virtio {
    /// Its slot in the layout.
    pub slot: u32,
    /// "blk", "console" or "net", for the log.
    pub kind: &'static str,
    pub transport: spin::Mutex<Transport>,
    pub backend: spin::Mutex<Backend>,
    /// Where its doorbell rings and its thread waits.
    pub port: Port<'static>,
    /// The network card at the other end of its link.
    pub peer: spin::Mutex<Option<Peer>>,
    /// The VM's name, for the log.
    pub vm: Arc<str>,
    /// Raises the device's SPI in its VM's distributor if its line is up (set by the VM).
    pub line: spin::Once<Box<dyn Fn() + Send + Sync>>,
    /// A network card holds a frame its peer had no buffer for.
    holding: AtomicBool,
    warned: AtomicBool,
    request_warned: AtomicBool,
    kick_pending: AtomicBool,
    /// The driver reset the device: its thread drops what the old driver gave it.
    reset_pending: AtomicBool,
}

impl Virtio {
    pub fn new(
        slot: u32,
        kind: &'static str,
        transport: Transport,
        backend: Backend,
        port: Port<'static>,
        vm: Arc<str>,
    ) -> Self {
        Self {
            slot,
            kind,
            transport: spin::Mutex::new(transport),
            backend: spin::Mutex::new(backend),
            port,
            peer: spin::Mutex::new(None),
            vm,
            line: spin::Once::new(),
            holding: AtomicBool::new(false),
            warned: AtomicBool::new(false),
            request_warned: AtomicBool::new(false),
            kick_pending: AtomicBool::new(false),
            reset_pending: AtomicBool::new(false),
        }
    }

    /// The guest-physical base of its register window.
    pub fn base(&self) -> u64 {
        crate::layout::VIRTIO_BASE + u64::from(self.slot) * crate::layout::VIRTIO_STRIDE
    }

    /// Raises its interrupt if its line is up.
    pub fn raise_line(&self) {
        if let Some(raise) = self.line.get() {
            raise();
        }
    }

    /// Wakes its thread to look at the queues: one kick at a time waits in the port, however
    /// often the guest or a peer asks.
    pub fn kick(&self) {
        if !self.kick_pending.swap(true, Ordering::AcqRel) {
            // A full port already holds packets that wake the thread.
            let _ = self.port.queue(KICK, [0; 4]);
        }
    }

    /// The thread took a kick: the next one is queued again.
    pub fn kicked(&self) {
        self.kick_pending.store(false, Ordering::Release);
    }

    /// The driver broke a rule: said once per device, in the VM's log.
    pub fn warn(&self, what: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            defmt::warn!(
                "vm {=str}: virtio-{=str} (slot {=u32}): {=str}: the device needs a reset (logged once)",
                &*self.vm,
                self.kind,
                self.slot,
                what
            );
        }
    }

    /// Serves the device's queues once (its thread, after a doorbell of its driver, `doorbell`,
    /// or a kick). `emit` takes the console's output.
    pub fn serve(&self, ram: &mut GuestRam<'_>, emit: &mut dyn FnMut(Output<'_>), doorbell: bool) {
        let mut backend = self.backend.lock();
        if self.reset_pending.swap(false, Ordering::AcqRel) {
            match &mut *backend {
                Backend::Net(held) => {
                    *held = None;
                    self.holding.store(false, Ordering::SeqCst);
                }
                Backend::Console(console) => console.reset(emit),
                Backend::Blk(_) => {}
            }
        }
        let result = match &mut *backend {
            Backend::Blk(blk) => blk.process(&mut self.transport.lock(), ram).map(|served| {
                if served.bad > 0 && !self.request_warned.swap(true, Ordering::Relaxed) {
                    defmt::warn!(
                        "vm {=str}: virtio-{=str} (slot {=u32}): a malformed request, or one with a buffer outside the VM's RAM, failed alone (logged once)",
                        &*self.vm,
                        self.kind,
                        self.slot
                    );
                }
            }),
            Backend::Console(console) => console.process(&mut self.transport.lock(), ram, emit).map(|_| ()),
            Backend::Net(held) => {
                let peer = self.peer.lock().clone();
                let result = self.transmit(held, ram, peer.as_ref());
                if held.is_none() {
                    self.holding.store(false, Ordering::SeqCst);
                }
                // A peer holding a frame for us is woken when our driver rang (it may have
                // posted receive buffers); never on a kick, so two cards that both wait for
                // buffers do not wake each other in turn forever.
                if let Some(peer) = peer.filter(|p| doorbell && p.device.holding.load(Ordering::SeqCst)) {
                    peer.device.kick();
                }
                result
            }
        };
        if let Err(error) = result {
            self.warn(queue_error(error));
        }
    }

    /// Moves this card's frames to its peer until its transmit queue is empty or the peer has
    /// no receive buffer (then the frame is held, and the peer's next kick brings us back).
    fn transmit(
        &self,
        held: &mut Option<Outgoing>,
        ram: &mut GuestRam<'_>,
        peer: Option<&Peer>,
    ) -> Result<(), QueueError> {
        let Some(peer) = peer else {
            // No peer: frames go nowhere, as on an unplugged cable.
            *held = None;
            loop {
                let taken = virtio_net::take(&mut self.transport.lock(), ram)?;
                match taken {
                    Taken::Empty => return Ok(()),
                    Taken::Refused => {}
                    Taken::Frame(out) => virtio_net::complete(&mut self.transport.lock(), ram, out.chain.head)?,
                }
            }
        };
        let mut peer_ram = GuestRam { vmo: &peer.ram, size: peer.size };
        let mut delivered = false;
        let result = loop {
            let out = match held.take() {
                Some(out) => out,
                None => match virtio_net::take(&mut self.transport.lock(), ram) {
                    Ok(Taken::Empty) => break Ok(()),
                    Ok(Taken::Refused) => continue,
                    Ok(Taken::Frame(out)) => out,
                    Err(error) => break Err(error),
                },
            };
            // Each piece moves from the sender's RAM into the peer's with one copy (the VMOs'
            // page-to-page transfer), both ranges checked against their RAM first.
            let chain = &out.chain;
            let sender: &GuestRam<'_> = ram;
            let receiver = GuestRam { vmo: &peer.ram, size: peer.size };
            let mut copy = |from: u64, address: u64, n: usize| {
                let Ok(target) = receiver.offset(address, n) else { return false };
                let moved = chain.pieces(false, virtio_net::HEADER as u64 + from, n, |source, range| {
                    let outside = QueueError::OutsideRam(source);
                    let at = sender.offset(source, range.len()).map_err(|_| outside)?;
                    let to = target + range.start as u64;
                    receiver.vmo.copy_from(to, sender.vmo, at, range.len() as u64).map_err(|_| outside)
                });
                moved.is_ok_and(|m| m == n)
            };
            let delivery = virtio_net::deliver(&mut peer.device.transport.lock(), &mut peer_ram, out.len, &mut copy);
            let delivery = delivery.unwrap_or_else(|error| {
                // The peer's queue is broken: its device needs a reset; the frame is lost.
                peer.device.warn(queue_error(error));
                Delivery::Unreadable
            });
            if delivery == Delivery::NoBuffer {
                *held = Some(out);
                if self.holding.swap(true, Ordering::SeqCst) {
                    break Ok(());
                }
                // Said before looking once more: a peer whose driver posts buffers and rings
                // from now on sees it and kicks us; one that did before, we see now.
                continue;
            }
            delivered = true;
            if let Err(error) = virtio_net::complete(&mut self.transport.lock(), ram, out.chain.head) {
                break Err(error);
            }
        };
        if delivered {
            peer.device.raise_line();
        }
        result
    }
}

fn queue_error(error: QueueError) -> &'static str {
    match error {
        QueueError::BadSize(_) => "a queue size that is not a power of two up to 256",
        QueueError::Misaligned(_) => "a misaligned ring or descriptor table",
        QueueError::Overflow(_) => "a ring, table or buffer past the end of the address space",
        QueueError::IndexJump { .. } => "an available index that jumped by more than the queue size",
        QueueError::BadIndex(_) => "a descriptor index outside its table",
        QueueError::Loop => "a descriptor chain that loops",
        QueueError::NestedIndirect => "an indirect descriptor inside an indirect table, or with NEXT",
        QueueError::BadIndirect(_) => "an indirect table of a bad length",
        QueueError::ReadableAfterWritable => "a device-readable buffer after a device-writable one",
        QueueError::OutsideRam(_) => "a ring or descriptor outside the VM's RAM",
    }
}

/// A device's register window on the bus.
pub struct Window(pub Arc<Virtio>);

impl Device for Window {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        self.0.transport.lock().read(offset, size)
    }

    fn write(&mut self, offset: u64, size: u8, value: u64) {
        let event = self.0.transport.lock().write(offset, size, value);
        match event {
            Event::None => {}
            // The thread looks at the queues, which the driver may have filled before.
            Event::DriverOk => self.0.kick(),
            Event::Reset => {
                // The device's thread forgets what belonged to the driver that reset (a held
                // frame's chain) before it serves again. Not done here: a VCPU thread holding
                // its bus slot must never wait for a device's backend, which a peer's thread
                // may hold while it waits for that slot to raise the line.
                self.0.reset_pending.store(true, Ordering::Release);
                self.0.kick();
            }
            Event::Broken(error) => self.0.warn(queue_error(error)),
        }
    }

    fn interrupt(&mut self) -> bool {
        self.0.transport.lock().interrupt()
    }
}

/// An empty slot of a trapped page: reads as a virtio-mmio window with device ID 0 ("no
/// device", as QEMU's unused slots), writes are ignored.
pub struct EmptySlot;

impl Device for EmptySlot {
    fn read(&mut self, offset: u64, size: u8) -> u64 {
        match (offset, size) {
            (crate::virtio_mmio::MAGIC_VALUE, 4) => u64::from(crate::virtio_mmio::MAGIC),
            (crate::virtio_mmio::VERSION_REG, 4) => u64::from(crate::virtio_mmio::VERSION),
            (crate::virtio_mmio::VENDOR_ID, 4) => u64::from(crate::virtio_mmio::VENDOR),
            _ => 0,
        }
    }

    fn write(&mut self, _: u64, _: u8, _: u64) {}
}

/// A boxed [`EmptySlot`] for the bus.
pub fn empty_slot() -> Box<dyn Device> {
    Box::new(EmptySlot)
}
