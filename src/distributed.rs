//! Data-parallel training over MPI (the `mpi` cargo feature): the world communicator as a
//! `Collective`, each rank's place on its machine (device, CPU threads), and ending the whole job.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::*;
use sinter_model::parallel::Collective;
use sinter_model::{ModelError, Result};
use std::cell::RefCell;

/// MPI, initialised for this process. Dropping it finalises MPI, so it must outlive every
/// [`MpiCollective`].
pub struct Mpi {
    universe: Universe,
    /// This process's rank in the job, `0..size`.
    pub rank: usize,
    /// Processes in the job.
    pub size: usize,
    /// This process's rank among the job's processes on this machine (an MPI shared-memory
    /// split): picks its GPU and its share of CPU threads.
    pub local_rank: usize,
    /// The job's processes on this machine.
    pub local_size: usize,
}

impl Mpi {
    /// Initialises MPI. Started without `mpirun`, the process is a job of one rank.
    pub fn start() -> Result<Mpi> {
        let universe = mpi::initialize().ok_or_else(|| {
            ModelError::Distributed("MPI was already initialised in this process".into())
        })?;
        let world = universe.world();
        let local = world.split_shared(world.rank());
        Ok(Mpi {
            rank: world.rank() as usize,
            size: world.size() as usize,
            local_rank: local.rank() as usize,
            local_size: local.size() as usize,
            universe,
        })
    }

    /// The MPI library's own name and version.
    pub fn library(&self) -> String {
        library_version()
    }

    /// The job's ranks as a [`Collective`] for the trainer.
    pub fn collective(&self) -> MpiCollective {
        MpiCollective {
            world: self.universe.world(),
            scratch: RefCell::new(Vec::new()),
        }
    }

    /// Ends every rank of the job at once (MPI_Abort): what a rank that fails alone must do, as
    /// the others would otherwise wait for it forever inside a collective.
    pub fn abort(&self, code: i32) -> ! {
        self.universe.world().abort(code)
    }
}

/// The world communicator. MPI's default error handler is fatal: a failed collective ends the
/// job with MPI's message rather than returning here.
pub struct MpiCollective {
    world: SimpleCommunicator,
    /// A copy of the values being summed (MPI's all-reduce reads and writes separate buffers).
    scratch: RefCell<Vec<f32>>,
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<()> {
        let mut send = self.scratch.borrow_mut();
        send.clear();
        send.extend_from_slice(values);
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }

    fn broadcast_from_root(&self, values: &mut [f32]) -> Result<()> {
        self.world.process_at_rank(0).broadcast_into(values);
        Ok(())
    }

    fn all_gather_u64(&self, values: &[u64]) -> Result<Vec<u64>> {
        let mut all = vec![0u64; values.len() * self.size()];
        self.world.all_gather_into(values, &mut all[..]);
        Ok(all)
    }
}

/// The first line of the MPI library's version string (callable before MPI is initialised).
pub fn library_version() -> String {
    mpi::environment::library_version()
        .map(|v| v.lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_else(|_| "unknown MPI library".into())
}
