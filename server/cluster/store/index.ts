/** The PostgreSQL cluster store: shared registry, session claims and device state of several hub instances. */
import { HubError } from '../../errors.ts';
import type { OpenClusterStore } from './types.ts';

export type {
  ClusterStore,
  ClusterStoreOptions,
  OpenClusterStore,
  SessionClaim,
  SharedBoot,
  SharedDeviceState,
} from './types.ts';

/** Opens the store (implementation follows; the contract in ./types.ts is final). */
export const openClusterStore: OpenClusterStore = async () => {
  throw new HubError('INTERNAL', 'the cluster store is not implemented yet');
};
