/** The rooms area's services, built once from shared dependencies and handed to the routes. */
import { RoomCreator } from "./create_room.ts";
import { MembershipService } from "./membership.ts";
import { PublicRoomDirectory } from "./public_rooms.ts";
import { RoomAliases } from "./room_aliases.ts";
import type { RoomServiceDeps } from "./room_services.ts";
import { RoomUpgrader } from "./room_upgrade.ts";

/** Room creation, membership, aliases, the public directory and upgrades. */
export class Rooms {
  readonly creator: RoomCreator;
  readonly membership: MembershipService;
  readonly aliases: RoomAliases;
  readonly publicRooms: PublicRoomDirectory;
  readonly upgrader: RoomUpgrader;

  /** Build every rooms service over the same dependencies. */
  constructor(readonly deps: RoomServiceDeps) {
    this.creator = new RoomCreator(deps);
    this.membership = new MembershipService(deps);
    this.aliases = new RoomAliases(deps);
    this.publicRooms = new PublicRoomDirectory(deps);
    this.upgrader = new RoomUpgrader(deps);
  }
}
