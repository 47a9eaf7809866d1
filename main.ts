/**
 * The composition root: the modules this build contains, handed to the `tessera` CLI. The only
 * file that imports every module's declaration.
 */
import { CatalogModule } from "./modules/catalog/CatalogModule.ts"
import { IdentityModule } from "./modules/identity/IdentityModule.ts"
import { InventoryModule } from "./modules/inventory/InventoryModule.ts"
import { NotificationsModule } from "./modules/notifications/NotificationsModule.ts"
import { OrdersModule } from "./modules/orders/OrdersModule.ts"
import { PaymentsModule, PspSimCommand } from "./modules/payments/PaymentsModule.ts"
import { ShippingModule } from "./modules/shipping/ShippingModule.ts"
import * as Cli from "./runtime/Cli.ts"

export const modules = [CatalogModule, InventoryModule, IdentityModule, PaymentsModule, ShippingModule, OrdersModule, NotificationsModule]

/** Commands modules add to `tessera`: `psp-sim`, the payment provider simulator. */
export const commands = [PspSimCommand]

export const run = () => Cli.main(modules, commands)
