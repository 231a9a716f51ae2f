// What the engine works on: an inventory, how the user named it, and its render.
import type { Inventory } from '../model/inventory.js';
import type { RenderedHost } from '../render/render.js';

export interface Fleet {
  inv: Inventory;
  /** The inventory as the user named it (plans and audit records show this). */
  display: string;
  rendered: RenderedHost[];
}
